// Downstream smoke test: compiles against spruce's umbrella header through the exported
// (or add_subdirectory'd) target and exercises a few core entry points.
#include <cstdio>
#include <vector>

#include "spruce/spruce.hpp"

int main() {
  int failures = 0;
  auto check = [&](bool ok, const char* what) {
    if (!ok) {
      std::fprintf(stderr, "spruce consumer: FAILED %s\n", what);
      ++failures;
    }
  };

  check(spruce::round_half_even(2.5) == 2.0, "round_half_even(2.5) == 2");
  check(spruce::round_half_even(3.5) == 4.0, "round_half_even(3.5) == 4");

  std::vector<float> data{0.f, 1.f, 2.f, 3.f, 4.f, 5.f};
  auto flat = spruce::make_view(data);
  check(flat.size() == 6 && flat(4) == 4.f, "1-d view over a vector");
  auto grid = spruce::make_view(data, 2, 3);
  check(grid.extent(0) == 2 && grid.extent(1) == 3 && grid(1, 2) == 5.f,
        "2x3 view over a vector");
  grid(0, 1) = 7.f;
  check(data[1] == 7.f, "views write through to the vector");

  if (failures != 0) return 1;
  std::printf("spruce consumer OK (spruce %d.%d.%d)\n", SPRUCE_VERSION_MAJOR,
              SPRUCE_VERSION_MINOR, SPRUCE_VERSION_PATCH);
  return 0;
}
