// libFuzzer harness for spruce/io/safetensors.hpp: any bytes either parse into a header
// whose every tensor lies inside the input, or throw spruce::error; never a crash, a leak
// or a sanitizer report. A parsed header is written back with safetensors_header_bytes and
// must parse again to the same tensors (the writer and the reader agree).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "spruce/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
  spruce::io::safetensors_header h;
  try {
    h = spruce::io::parse_safetensors(file, "fuzz");
  } catch (const spruce::error&) {
    return 0;
  }
  std::vector<spruce::io::safetensors_spec> specs;
  for (const auto& e : h.tensors) {
    if (h.data_start + e.end > size || e.begin > e.end) std::abort();
    if (e.elements() <= (1u << 16) && spruce::io::is_prunable(e.dtype)) {
      std::vector<float> v(e.elements());
      spruce::io::to_values(e.dtype, file.data() + h.data_start + e.begin, v.size(), v.data());
    }
    specs.push_back({e.name, e.dtype, e.shape});
  }
  std::string again;
  try {
    again = spruce::io::safetensors_header_bytes(specs, h.metadata);
  } catch (const spruce::error&) {
    return 0;  // e.g. a name the writer refuses
  }
  again.append(reinterpret_cast<const char*>(data) + h.data_start, static_cast<std::size_t>(h.data_size));
  const auto h2 = spruce::io::parse_safetensors(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(again.data()), again.size()), "fuzz-again");
  if (h2.tensors.size() != h.tensors.size() || h2.metadata != h.metadata) std::abort();
  for (std::size_t i = 0; i < h.tensors.size(); ++i)
    if (h2.tensors[i].name != h.tensors[i].name || h2.tensors[i].shape != h.tensors[i].shape ||
        h2.tensors[i].bytes() != h.tensors[i].bytes())
      std::abort();
  return 0;
}
