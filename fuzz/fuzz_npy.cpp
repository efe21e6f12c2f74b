// libFuzzer harness for spruce/io/npy.hpp: any bytes either parse into an array whose data
// is exactly the rest of the input, or throw spruce::error; never a crash, a leak or a
// sanitizer report. A parsed array is written back with npy_header and must parse again
// to the same dtype, order and shape, and its bytes survive the trip to C order and back.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "spruce/io/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  spruce::io::npy_array a;
  try {
    a = spruce::io::parse_npy(file, "fuzz");
  } catch (const spruce::error&) {
    return 0;
  }
  if (a.data.data() + a.data.size() != file.data() + file.size()) std::abort();
  if (spruce::io::is_prunable(a.dtype) && a.elements() <= (1u << 16)) {
    std::vector<double> v(a.elements());
    spruce::io::to_values(a.dtype, a.data.data(), v.size(), v.data(), a.swapped());
  }
  // The layout round trip spruce-prune relies on: to C order, native-endian, and back.
  const std::vector<std::byte> c = spruce::io::to_native_c_order(a);
  const std::vector<std::byte> back =
      spruce::io::from_native_c_order(c, a.dtype, a.shape, a.fortran_order, a.big_endian);
  if (!std::equal(back.begin(), back.end(), a.data.begin(), a.data.end())) std::abort();
  std::string again = spruce::io::npy_header(a.dtype, a.shape, a.fortran_order, a.big_endian);
  again.append(reinterpret_cast<const char*>(a.data.data()), a.data.size());
  const auto b = spruce::io::parse_npy(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(again.data()), again.size()), "fuzz-again");
  if (b.dtype != a.dtype || b.shape != a.shape || b.fortran_order != a.fortran_order || b.big_endian != a.big_endian)
    std::abort();
  return 0;
}
