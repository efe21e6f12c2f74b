#pragma once
// safetensors (https://github.com/huggingface/safetensors): an 8-byte little-endian header
// length N, N bytes of a JSON object
//   {"__metadata__": {"k": "v"}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
// (padded with spaces), then the tensors' raw little-endian bytes. The reader enforces the
// format's rules exactly and refuses, naming the file and the tensor, anything it cannot
// trust; the JSON goes through nlohmann-json (a well-kept, fuzzed parser), never a
// hand-written one. Opt-in: the umbrella spruce/spruce.hpp does not include it, and a
// program that does needs nlohmann-json's headers (Debian: nlohmann-json3-dev).

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "spruce/core/error.hpp"
#include "spruce/core/extents.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "spruce/io/atomic_writer.hpp"
#include "spruce/io/dtype.hpp"
#include "spruce/io/mapped_file.hpp"

namespace spruce::io {

static_assert(std::endian::native == std::endian::little,
              "spruce/io/safetensors.hpp hands out views of little-endian data: a little-endian host is needed");

/// The largest header the reader accepts (the reference implementation's cap): a length
/// field past it is corruption, and refusing it keeps a damaged file from turning into a
/// huge allocation.
inline constexpr std::uint64_t safetensors_max_header = std::uint64_t{100} << 20;

/// One tensor of a safetensors file as its header describes it; `begin` and `end` are
/// offsets into the data section (after the header).
struct safetensors_entry {
  std::string name;
  io::dtype dtype = io::dtype::f32;
  std::vector<std::size_t> shape;
  std::uint64_t begin = 0, end = 0;

  std::size_t elements() const noexcept {
    std::size_t n = 1;
    for (std::size_t d : shape) n *= d;
    return n;
  }
  std::uint64_t bytes() const noexcept { return end - begin; }
};

/// A validated header: the metadata, the tensors in data-offset order, and where the data
/// section starts in the file.
struct safetensors_header {
  std::map<std::string, std::string> metadata;
  std::vector<safetensors_entry> tensors;
  std::uint64_t data_start = 0;
  std::uint64_t data_size = 0;

  /// The entry named `name`, or nullptr.
  const safetensors_entry* find(std::string_view name) const noexcept {
    for (const auto& e : tensors)
      if (e.name == name) return &e;
    return nullptr;
  }
};

namespace detail {

[[noreturn]] inline void safetensors_fail(const std::string& label, const std::string& what) {
  throw error("safetensors file '" + label + "': " + what +
              "; the file is corrupt, truncated or not a safetensors file (write it again)");
}

inline std::uint64_t json_u64(const nlohmann::json& v, const std::string& label, const std::string& what) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(v.get<std::int64_t>());
  if (v.is_number_float())
    safetensors_fail(label, what + " is " + v.dump() + ", not a non-negative integer (or too large for 64 bits)");
  safetensors_fail(label, what + " is " + v.dump() + ", not a non-negative integer");
}

inline safetensors_entry read_entry(const std::string& name, const nlohmann::json& v, const std::string& label) {
  const std::string who = "tensor '" + name + "'";
  if (!v.is_object()) safetensors_fail(label, who + " is not described by a JSON object");
  for (const auto& [k, _] : v.items())
    if (k != "dtype" && k != "shape" && k != "data_offsets")
      safetensors_fail(label, who + " has an unexpected field '" + k + "'");
  if (!v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
    safetensors_fail(label, who + " lacks one of dtype, shape, data_offsets");
  const auto& dt = v["dtype"];
  if (!dt.is_string()) safetensors_fail(label, who + " has a dtype that is not a string");
  const auto d = parse_dtype(dt.get_ref<const std::string&>());
  if (!d)
    safetensors_fail(label, who + " has unknown dtype '" + dt.get<std::string>() +
                                "' (known: BOOL, U8, I8, U16, I16, F16, BF16, U32, I32, F32, U64, I64, F64, "
                                "F8_E4M3, F8_E5M2)");
  safetensors_entry e;
  e.name = name;
  e.dtype = *d;
  const auto& sh = v["shape"];
  if (!sh.is_array()) safetensors_fail(label, who + " has a shape that is not an array");
  if (sh.size() > spruce::max_rank)
    safetensors_fail(label, who + " has rank " + std::to_string(sh.size()) + "; spruce reads ranks up to " +
                                std::to_string(spruce::max_rank));
  std::uint64_t bytes = dtype_size(*d);
  for (const auto& x : sh) {
    const std::uint64_t n = json_u64(x, label, who + " shape entry");
    if (n != 0 && bytes > std::numeric_limits<std::uint64_t>::max() / n)
      safetensors_fail(label, who + " has a shape too large to exist");
    bytes *= n;
    e.shape.push_back(static_cast<std::size_t>(n));
  }
  const auto& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2) safetensors_fail(label, who + " data_offsets is not a [begin, end] pair");
  e.begin = json_u64(off[0], label, who + " data_offsets begin");
  e.end = json_u64(off[1], label, who + " data_offsets end");
  if (e.end < e.begin)
    safetensors_fail(label, who + " has data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                                "] that end before they begin");
  if (bytes != e.end - e.begin)
    safetensors_fail(label, who + " has shape " + shape_string(e.shape) + " of dtype " +
                                std::string(dtype_name(*d)) + " (" + std::to_string(bytes) +
                                " bytes) but data_offsets span " + std::to_string(e.end - e.begin) + " bytes");
  return e;
}

// Rejects duplicate keys (nlohmann keeps the last silently) and nesting past what a
// header can hold, while the parser runs.
struct header_guard {
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  bool too_deep = false;
};

}  // namespace detail

/// Parses and validates the header of a whole safetensors file held in `file` (a mapping,
/// or bytes in memory); `label` names it in errors. The rules: at least 8 bytes; the
/// little-endian header length is at most safetensors_max_header and inside the file; the
/// header is one JSON object (UTF-8, no duplicate keys), optionally padded with spaces;
/// `__metadata__`, when present, maps strings to strings; every other key is a tensor with
/// exactly dtype (a known name), shape (non-negative integers) and data_offsets [b, e],
/// b <= e, whose span is shape x dtype size; sorted by offset the tensors tile the data
/// section exactly (first at 0, each where the previous ends: no overlap, no gap, nothing
/// past the end of the file, no trailing bytes). Throws spruce::error naming the file, the
/// tensor and the rule; returns nothing partial.
inline safetensors_header parse_safetensors(std::span<const std::byte> file, const std::string& label) {
  const std::uint64_t size = file.size();
  if (size < 8)
    detail::safetensors_fail(label, "it is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
  std::uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | std::to_integer<std::uint64_t>(file[static_cast<std::size_t>(k)]);
  if (n > safetensors_max_header)
    detail::safetensors_fail(label, "the header length field says " + std::to_string(n) +
                                        " bytes, more than the format's limit of 100 MiB");
  if (n > size - 8)
    detail::safetensors_fail(label, "the header length field says " + std::to_string(n) + " bytes but the file has " +
                                        std::to_string(size - 8) + " bytes after it (truncated file)");
  if (n < 2)
    detail::safetensors_fail(label, "the header length field says " + std::to_string(n) +
                                        " bytes, too short for a JSON object");
  const char* text = reinterpret_cast<const char*>(file.data() + 8);
  if (text[0] != '{') detail::safetensors_fail(label, "the header does not start with '{'");

  detail::header_guard guard;
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(
        text, text + n,
        [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
          using E = nlohmann::json::parse_event_t;
          if (depth > 4) {
            guard.too_deep = true;
            throw std::runtime_error("too deep");
          }
          if (ev == E::object_start) guard.keys.emplace_back();
          if (ev == E::object_end && !guard.keys.empty()) guard.keys.pop_back();
          if (ev == E::key && !guard.keys.empty() && !guard.keys.back().insert(parsed.get<std::string>()).second) {
            guard.duplicate = parsed.get<std::string>();
            throw std::runtime_error("duplicate");
          }
          return true;
        });
  } catch (const nlohmann::json::exception& ex) {
    detail::safetensors_fail(label, std::string("the header is not valid JSON (") + ex.what() + ")");
  } catch (const std::runtime_error&) {
    if (!guard.duplicate.empty()) detail::safetensors_fail(label, "the header lists key '" + guard.duplicate + "' twice");
    detail::safetensors_fail(label, "the header nests deeper than a safetensors header can");
  }
  if (!root.is_object()) detail::safetensors_fail(label, "the header is not a JSON object");

  safetensors_header h;
  h.data_start = 8 + n;
  h.data_size = size - 8 - n;
  for (const auto& [key, val] : root.items()) {
    if (key == "__metadata__") {
      if (!val.is_object()) detail::safetensors_fail(label, "__metadata__ is not a JSON object");
      for (const auto& [k, v] : val.items()) {
        if (!v.is_string()) detail::safetensors_fail(label, "__metadata__ value '" + k + "' is not a string");
        h.metadata.emplace(k, v.get<std::string>());
      }
      continue;
    }
    h.tensors.push_back(detail::read_entry(key, val, label));
  }
  std::stable_sort(h.tensors.begin(), h.tensors.end(), [](const safetensors_entry& a, const safetensors_entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t at = 0;
  const safetensors_entry* prev = nullptr;
  for (const auto& e : h.tensors) {
    if (e.end > h.data_size)
      detail::safetensors_fail(label, "tensor '" + e.name + "' ends at data byte " + std::to_string(e.end) +
                                          " but the data section has only " + std::to_string(h.data_size) +
                                          " bytes (truncated file)");
    if (e.begin < at)
      detail::safetensors_fail(label, "tensors '" + (prev ? prev->name : std::string()) + "' and '" + e.name +
                                          "' overlap (data_offsets [" + std::to_string(prev ? prev->begin : 0) + ", " +
                                          std::to_string(at) + "] and [" + std::to_string(e.begin) + ", " +
                                          std::to_string(e.end) + "])");
    if (e.begin > at)
      detail::safetensors_fail(label, "data bytes " + std::to_string(at) + " to " + std::to_string(e.begin) +
                                          " before tensor '" + e.name + "' belong to no tensor (a gap)");
    at = e.end;
    prev = &e;
  }
  if (at != h.data_size)
    detail::safetensors_fail(label, "the tensors cover " + std::to_string(at) + " data bytes but the file has " +
                                        std::to_string(h.data_size) + " (trailing bytes)");
  return h;
}

/// A safetensors file, memory-mapped and validated at construction (parse_safetensors):
/// tensors are read as views into the mapping, never copied. Move-only; views stay valid
/// as long as the object.
class safetensors_file {
 public:
  explicit safetensors_file(const std::filesystem::path& path)
      : map_(path, "safetensors file"), header_(parse_safetensors(map_.bytes(), path.string())) {}

  const std::filesystem::path& path() const noexcept { return map_.path(); }
  const safetensors_header& header() const noexcept { return header_; }
  const std::vector<safetensors_entry>& tensors() const noexcept { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const noexcept { return header_.metadata; }
  const mapped_file& mapping() const noexcept { return map_; }

  /// The entry named `name`; throws spruce::error naming the file when there is none.
  const safetensors_entry& at(std::string_view name) const {
    if (const auto* e = header_.find(name)) return *e;
    throw error("safetensors file '" + path().string() + "' has no tensor '" + std::string(name) +
                "'; list its tensors with `spruce-prune inspect`");
  }

  /// The raw bytes of `e` (a view into the mapping).
  std::span<const std::byte> bytes(const safetensors_entry& e) const noexcept {
    return map_.bytes().subspan(static_cast<std::size_t>(header_.data_start + e.begin),
                                static_cast<std::size_t>(e.bytes()));
  }

  /// `e` as a typed view into the mapping. T must be the entry's own type (float for F32,
  /// double for F64, std::uint16_t for F16 / BF16, ...: same size) and the data aligned
  /// for it; throws spruce::error naming the tensor otherwise (read_values converts).
  template <class T>
  tensor_ref<const T> view(const safetensors_entry& e) const {
    const auto b = bytes(e);
    if (sizeof(T) != dtype_size(e.dtype))
      throw error("tensor '" + e.name + "' of '" + path().string() + "' has dtype " + std::string(dtype_name(e.dtype)) +
                  " (" + std::to_string(dtype_size(e.dtype)) + " bytes per element), not a type of " +
                  std::to_string(sizeof(T)) + " bytes; view it as its own type or convert it");
    if (reinterpret_cast<std::uintptr_t>(b.data()) % alignof(T) != 0)
      throw error("tensor '" + e.name + "' of '" + path().string() + "' starts at an address not aligned for its " +
                  "type (the writer did not align data_offsets); read it with read_values, which copies");
    return tensor_ref<const T>(reinterpret_cast<const T*>(b.data()), std::span<const std::size_t>(e.shape));
  }

  /// The values of a floating tensor converted to T (exact for F16 / BF16 / F32 to float
  /// and every dtype to double); `out` holds e.elements() values.
  template <class T>
  void read_values(const safetensors_entry& e, std::span<T> out) const {
    if (out.size() != e.elements())
      throw error("read_values: " + std::to_string(out.size()) + " slots for tensor '" + e.name + "' of " +
                  std::to_string(e.elements()) + " elements");
    to_values(e.dtype, bytes(e).data(), out.size(), out.data(), false, "tensor '" + e.name + "'");
  }

  /// Lets the kernel drop `e`'s pages from the resident set (see mapped_file::release).
  void release(const safetensors_entry& e) const noexcept {
    map_.release(static_cast<std::size_t>(header_.data_start + e.begin), static_cast<std::size_t>(e.bytes()));
  }

 private:
  mapped_file map_;
  safetensors_header header_;
};

/// A tensor to be written: the header's description of it.
struct safetensors_spec {
  std::string name;
  io::dtype dtype = io::dtype::f32;
  std::vector<std::size_t> shape;

  std::uint64_t bytes() const noexcept {
    std::uint64_t n = dtype_size(dtype);
    for (std::size_t d : shape) n *= d;
    return n;
  }
};

/// The 8-byte length and the JSON header (metadata first, tensors in the given order, laid
/// out back to back in that order, padded with spaces to a multiple of 8 so the data is
/// 8-byte aligned) for `specs`. Throws spruce::error, naming the tensor, for an empty,
/// duplicate or reserved (`__metadata__`) name, a name or metadata that is not UTF-8, or a
/// header past the format's limit.
inline std::string safetensors_header_bytes(std::span<const safetensors_spec> specs,
                                            const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = std::move(m);
  }
  std::set<std::string_view> names;
  std::uint64_t offset = 0;
  for (const auto& s : specs) {
    if (s.name.empty()) throw error("safetensors writer: a tensor has an empty name; give every tensor its name");
    if (s.name == "__metadata__")
      throw error("safetensors writer: '__metadata__' is reserved by the format; rename the tensor");
    if (!names.insert(s.name).second)
      throw error("safetensors writer: tensor '" + s.name + "' is listed twice; names must be unique");
    nlohmann::ordered_json t = nlohmann::ordered_json::object();
    t["dtype"] = std::string(dtype_name(s.dtype));
    t["shape"] = s.shape;
    t["data_offsets"] = {offset, offset + s.bytes()};
    offset += s.bytes();
    h[s.name] = std::move(t);
  }
  std::string text;
  try {
    text = h.dump();
  } catch (const nlohmann::json::exception& ex) {
    throw error(std::string("safetensors writer: a tensor name or metadata entry is not valid UTF-8 (") + ex.what() +
                "); use UTF-8 names");
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  if (text.size() > safetensors_max_header)
    throw error("safetensors writer: the header would exceed 100 MiB; write fewer tensors or shorter metadata");
  std::string out(8, '\0');
  for (int k = 0; k < 8; ++k) out[static_cast<std::size_t>(k)] = static_cast<char>(std::uint64_t{text.size()} >> (8 * k));
  return out + text;
}

/// Streams a safetensors file to `path` through atomic_writer: the header is written at
/// construction, then the tensors' bytes, in the order of `specs`, by any number of
/// `write` calls (a tensor may come in chunks); `commit()` checks that exactly the bytes
/// the header promised arrived and renames the file into place. Destroyed uncommitted (an
/// error on the way), it leaves nothing behind and any old `path` untouched.
class safetensors_writer {
 public:
  safetensors_writer(const std::filesystem::path& path, std::span<const safetensors_spec> specs,
                     const std::map<std::string, std::string>& metadata = {}, std::string_view what = "the checkpoint")
      : head_(safetensors_header_bytes(specs, metadata)),  // validated before any file exists
        expected_(data_bytes(specs)),
        out_(path, what, head_.size() + expected_) {  // a large file goes to the device directly
    out_.write(head_);
    header_bytes_ = head_.size();
    head_.clear();
    head_.shrink_to_fit();
  }

  void write(std::span<const std::byte> bytes) { out_.write(bytes); }
  void write(std::string_view bytes) { out_.write(bytes); }
  /// Whether the bytes go to the device with O_DIRECT (atomic_writer::direct()).
  bool direct() const noexcept { return out_.direct(); }
  /// Zero-copy appends of data bytes (atomic_writer::staging_space() and advance()).
  std::span<std::byte> staging_space() noexcept { return out_.staging_space(); }
  void advance(std::size_t n) { out_.advance(n); }

  void commit() {
    const std::uint64_t got = out_.written() - header_bytes_;
    if (got != expected_)
      throw error("safetensors writer for '" + out_.path().string() + "': " + std::to_string(got) +
                  " data bytes written but the header promises " + std::to_string(expected_) +
                  "; nothing was written (a bug in the caller)");
    out_.commit();
  }

 private:
  static std::uint64_t data_bytes(std::span<const safetensors_spec> specs) noexcept {
    std::uint64_t n = 0;
    for (const auto& s : specs) n += s.bytes();
    return n;
  }

  std::string head_;
  std::uint64_t expected_ = 0;
  atomic_writer out_;
  std::size_t header_bytes_ = 0;
};

}  // namespace spruce::io
