#pragma once
// NumPy's .npy format (numpy.lib.format, versions 1.0, 2.0 and 3.0): the magic
// "\x93NUMPY", a major and minor version byte, a little-endian header length (2 bytes in
// version 1, 4 in versions 2 and 3), a Python dict literal
//   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// padded with spaces and a newline so the data starts on a 64-byte boundary, then the
// array's bytes in the byte order and memory order the header names. Opt-in header.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/extents.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/io/atomic_writer.hpp"
#include "spruce/io/dtype.hpp"
#include "spruce/io/mapped_file.hpp"

namespace spruce::io {

/// An array read from a .npy file: its dtype, byte order and memory order, its shape, and
/// its bytes (a view into the buffer it was parsed from). Fortran order means the first
/// axis varies fastest (column-major).
struct npy_array {
  io::dtype dtype = io::dtype::f32;
  bool big_endian = false;
  bool fortran_order = false;
  std::vector<std::size_t> shape;
  std::span<const std::byte> data;
  int major_version = 1;

  std::size_t elements() const noexcept {
    std::size_t n = 1;
    for (std::size_t d : shape) n *= d;
    return n;
  }
  /// True when the bytes must be swapped to read them on this host.
  bool swapped() const noexcept { return big_endian != (std::endian::native == std::endian::big); }
};

namespace detail {

[[noreturn]] inline void npy_fail(const std::string& label, const std::string& what) {
  throw error(".npy file '" + label + "': " + what + "; the file is corrupt, truncated or not a .npy file (write it again)");
}

// descr -> dtype: '<f4', '>f8', '|u1', '|b1', '<i8', '<f2', ... (bool is '|b1'; numpy's
// '?' code too).
inline bool npy_descr(std::string_view s, dtype& d, bool& big) {
  if (s.size() < 2) return false;
  const char order = s[0];
  if (order != '<' && order != '>' && order != '|' && order != '=') return false;
  big = order == '>' || (order == '=' && std::endian::native == std::endian::big);
  const std::string_view t = s.substr(1);
  static constexpr struct {
    std::string_view code;
    dtype d;
  } table[] = {{"f2", dtype::f16}, {"f4", dtype::f32}, {"f8", dtype::f64}, {"i1", dtype::i8},  {"i2", dtype::i16},
               {"i4", dtype::i32}, {"i8", dtype::i64}, {"u1", dtype::u8},  {"u2", dtype::u16}, {"u4", dtype::u32},
               {"u8", dtype::u64}, {"b1", dtype::boolean}, {"?", dtype::boolean}};
  for (const auto& r : table)
    if (r.code == t) {
      d = r.d;
      if (dtype_size(d) == 1) big = false;
      return true;
    }
  return false;
}

// A tiny reader for the one dict literal numpy writes: string keys and values in single
// or double quotes, True/False, and a tuple of non-negative integers.
class npy_dict_reader {
 public:
  npy_dict_reader(std::string_view s, const std::string& label) : s_(s), label_(label) {}

  void parse(npy_array& a) {
    bool has_descr = false, has_order = false, has_shape = false;
    ws();
    expect('{');
    for (;;) {
      ws();
      if (eat('}')) break;
      const std::string key = str();
      ws();
      expect(':');
      ws();
      if (key == "descr" && !has_descr) {
        const std::string d = str();
        if (!npy_descr(d, a.dtype, a.big_endian))
          npy_fail(label_, "dtype '" + d + "' is not one spruce reads (bool, int8..int64, uint8..uint64, float16, "
                           "float32, float64; structured and object arrays are not tensors)");
        has_descr = true;
      } else if (key == "fortran_order" && !has_order) {
        if (word("True")) a.fortran_order = true;
        else if (word("False")) a.fortran_order = false;
        else fail("fortran_order is not True or False");
        has_order = true;
      } else if (key == "shape" && !has_shape) {
        expect('(');
        for (;;) {
          ws();
          if (eat(')')) break;
          a.shape.push_back(number());
          ws();
          if (eat(')')) break;
          expect(',');
        }
        if (a.shape.size() > spruce::max_rank) fail("rank " + std::to_string(a.shape.size()) + " exceeds 8");
        has_shape = true;
      } else {
        fail("unexpected or repeated key '" + key + "'");
      }
      ws();
      if (eat('}')) break;
      expect(',');
    }
    ws();
    if (i_ != s_.size()) fail("text after the dict");
    if (!has_descr || !has_order || !has_shape) fail("the header lacks one of descr, fortran_order, shape");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    npy_fail(label_, "its header (" + what + " at byte " + std::to_string(i_) + " of the dict)");
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  bool eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) return ++i_, true;
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  bool word(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) return false;
    i_ += w.size();
    return true;
  }
  std::string str() {
    if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"')) fail("expected a string");
    const char q = s_[i_++];
    const std::size_t b = i_;
    while (i_ < s_.size() && s_[i_] != q) {
      if (s_[i_] == '\\') fail("escapes are not part of a .npy header");
      ++i_;
    }
    if (i_ >= s_.size()) fail("unterminated string");
    return std::string(s_.substr(b, i_++ - b));
  }
  std::size_t number() {
    if (i_ >= s_.size() || s_[i_] < '0' || s_[i_] > '9') fail("expected a dimension");
    std::uint64_t x = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      const auto d = static_cast<std::uint64_t>(s_[i_++] - '0');
      if (x > (std::numeric_limits<std::uint32_t>::max() * std::uint64_t{1024} - d) / 10) fail("a dimension too large");
      x = x * 10 + d;
    }
    eat('L');  // Python 2's long suffix
    return static_cast<std::size_t>(x);
  }

  std::string_view s_;
  const std::string& label_;
  std::size_t i_ = 0;
};

}  // namespace detail

/// Parses a whole .npy file held in `file`; the array's data is a view into `file`.
/// Checks the magic, the version (1, 2 or 3), that the header fits, the dict (descr of a
/// numeric or bool dtype in either byte order, fortran_order, shape) and that the data is
/// exactly shape x itemsize bytes (a shorter file is truncated, a longer one has trailing
/// bytes). Throws spruce::error naming `label` and the rule.
inline npy_array parse_npy(std::span<const std::byte> file, const std::string& label) {
  static constexpr unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (file.size() < 10) detail::npy_fail(label, "it is " + std::to_string(file.size()) + " bytes, shorter than a header");
  for (int k = 0; k < 6; ++k)
    if (std::to_integer<unsigned char>(file[static_cast<std::size_t>(k)]) != magic[k])
      detail::npy_fail(label, "it does not start with the magic \\x93NUMPY");
  npy_array a;
  const int major = std::to_integer<int>(file[6]);
  if (major < 1 || major > 3) detail::npy_fail(label, "format version " + std::to_string(major) + " is not 1, 2 or 3");
  a.major_version = major;
  std::size_t len = 0, at = 0;
  if (major == 1) {
    len = std::to_integer<std::size_t>(file[8]) | (std::to_integer<std::size_t>(file[9]) << 8);
    at = 10;
  } else {
    if (file.size() < 12) detail::npy_fail(label, "it is too short for a version 2 header length");
    for (int k = 3; k >= 0; --k) len = (len << 8) | std::to_integer<std::size_t>(file[8 + static_cast<std::size_t>(k)]);
    at = 12;
  }
  if (len > file.size() - at)
    detail::npy_fail(label, "the header length says " + std::to_string(len) + " bytes but only " +
                                std::to_string(file.size() - at) + " follow (truncated file)");
  const std::string_view dict(reinterpret_cast<const char*>(file.data() + at), len);
  detail::npy_dict_reader(dict, label).parse(a);
  const std::size_t start = at + len;
  std::uint64_t bytes = dtype_size(a.dtype);
  for (std::size_t d : a.shape) {
    if (d != 0 && bytes > std::numeric_limits<std::uint64_t>::max() / d)
      detail::npy_fail(label, "its shape is too large to exist");
    bytes *= d;
  }
  const std::size_t have = file.size() - start;
  if (bytes != have)
    detail::npy_fail(label, "shape " + shape_string(a.shape) + " of " + std::string(dtype_name(a.dtype)) + " needs " +
                                std::to_string(bytes) + " data bytes but the file has " + std::to_string(have) +
                                (bytes > have ? " (truncated file)" : " (trailing bytes)"));
  a.data = file.subspan(start);
  return a;
}

/// A .npy file, memory-mapped and validated at construction; the array's data is a view
/// into the mapping (valid as long as the object).
class npy_file {
 public:
  explicit npy_file(const std::filesystem::path& path)
      : map_(path, ".npy file"), array_(parse_npy(map_.bytes(), path.string())) {}
  const npy_array& array() const noexcept { return array_; }
  const std::filesystem::path& path() const noexcept { return map_.path(); }
  /// The mapping the array's data views (its `release` drops pages from the resident set).
  const mapped_file& mapping() const noexcept { return map_; }

 private:
  mapped_file map_;
  npy_array array_;
};

namespace detail {
/// Copies `n` elements of `es` bytes between a C-order buffer and one in the given memory
/// order, reversing each element's bytes when `swap`: element at C flat index c and file
/// position p (Fortran: the first axis fastest) go `c_to_file ? out[p] = in[c] : out[c] = in[p]`.
inline void npy_reorder(const std::byte* in, std::byte* out, std::size_t es, std::span<const std::size_t> shape,
                        bool fortran, bool swap, bool c_to_file) {
  std::size_t n = 1;
  for (std::size_t d : shape) n *= d;
  auto put = [&](std::size_t to, std::size_t from) {
    for (std::size_t k = 0; k < es; ++k) out[to * es + k] = in[from * es + (swap ? es - 1 - k : k)];
  };
  if (!fortran || shape.size() < 2) {
    for (std::size_t i = 0; i < n; ++i) put(i, i);
    return;
  }
  // Walk file positions p in order with an odometer over the axes (axis 0 fastest), keeping
  // the C flat index c of the same element.
  std::vector<std::size_t> idx(shape.size(), 0), cstride(shape.size(), 1);
  for (std::size_t k = shape.size() - 1; k-- > 0;) cstride[k] = cstride[k + 1] * shape[k + 1];
  std::size_t c = 0;
  for (std::size_t p = 0; p < n; ++p) {
    if (c_to_file) put(p, c);
    else put(c, p);
    for (std::size_t k = 0; k < shape.size(); ++k) {
      c += cstride[k];
      if (++idx[k] < shape[k]) break;
      c -= cstride[k] * shape[k];
      idx[k] = 0;
    }
  }
}
}  // namespace detail

/// The array's bytes in C order and this host's byte order (the layout safetensors and
/// spruce's views use), copied: a Fortran-order or foreign-endian array cannot be viewed in
/// place. For an array that already is C order and native-endian it is a plain copy.
inline std::vector<std::byte> to_native_c_order(const npy_array& a) {
  std::vector<std::byte> out(a.data.size());
  detail::npy_reorder(a.data.data(), out.data(), dtype_size(a.dtype), a.shape, a.fortran_order, a.swapped(), false);
  return out;
}

/// The inverse of to_native_c_order: C-order, native-endian bytes of `d` and `shape` laid
/// out as a .npy array of the given memory and byte order stores them (what write_npy
/// takes), so an array read, changed in C order and written back keeps the file's layout.
inline std::vector<std::byte> from_native_c_order(std::span<const std::byte> c_order, dtype d,
                                                  std::span<const std::size_t> shape, bool fortran_order,
                                                  bool big_endian) {
  std::vector<std::byte> out(c_order.size());
  const bool swap = dtype_size(d) > 1 && big_endian != (std::endian::native == std::endian::big);
  detail::npy_reorder(c_order.data(), out.data(), dtype_size(d), shape, fortran_order, swap, true);
  return out;
}

/// The header numpy.save writes for an array of `d` and `shape` (version 1.0, or 2.0 when
/// the dict does not fit 65535 bytes), padded so the data starts on a 64-byte boundary.
/// BF16 and the F8 types have no .npy descr: spruce::error says so.
inline std::string npy_header(dtype d, std::span<const std::size_t> shape, bool fortran_order = false,
                              bool big_endian = false) {
  std::string code;
  switch (d) {
    case dtype::f16: code = "f2"; break;
    case dtype::f32: code = "f4"; break;
    case dtype::f64: code = "f8"; break;
    case dtype::i8: code = "i1"; break;
    case dtype::i16: code = "i2"; break;
    case dtype::i32: code = "i4"; break;
    case dtype::i64: code = "i8"; break;
    case dtype::u8: code = "u1"; break;
    case dtype::u16: code = "u2"; break;
    case dtype::u32: code = "u4"; break;
    case dtype::u64: code = "u8"; break;
    case dtype::boolean: code = "b1"; break;
    default:
      throw error(".npy writer: dtype " + std::string(dtype_name(d)) +
                  " has no .npy descr; write it as safetensors, or convert it (e.g. BF16 to F32)");
  }
  const char order = dtype_size(d) == 1 ? '|' : (big_endian ? '>' : '<');
  std::string dict = "{'descr': '" + std::string(1, order) + code + "', 'fortran_order': " +
                     (fortran_order ? "True" : "False") + ", 'shape': (";
  for (std::size_t i = 0; i < shape.size(); ++i) dict += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? ", " : "");
  if (shape.size() == 1) dict.pop_back();  // "(3,)"
  dict += "), }";
  const bool v2 = dict.size() + 1 + 10 > 65535;
  const std::size_t pre = v2 ? 12 : 10;
  dict.append((64 - (pre + dict.size() + 1) % 64) % 64, ' ');
  dict += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(v2 ? 2 : 1);
  out += '\0';
  const std::size_t n = dict.size();
  out += static_cast<char>(n & 0xFF);
  out += static_cast<char>((n >> 8) & 0xFF);
  if (v2) {
    out += static_cast<char>((n >> 16) & 0xFF);
    out += static_cast<char>((n >> 24) & 0xFF);
  }
  return out + dict;
}

/// Writes an array to `path` as .npy through atomic_writer; `data` is the array's bytes as
/// the header says they are (byte order and memory order). Throws spruce::error when the
/// byte count disagrees with the shape; nothing is written then.
inline void write_npy(const std::filesystem::path& path, dtype d, std::span<const std::size_t> shape,
                      std::span<const std::byte> data, bool fortran_order = false, bool big_endian = false) {
  std::uint64_t bytes = dtype_size(d);
  for (std::size_t x : shape) bytes *= x;
  if (bytes != data.size())
    throw error(".npy writer for '" + path.string() + "': shape " + shape_string(shape) + " of " +
                std::string(dtype_name(d)) + " is " + std::to_string(bytes) + " bytes but " +
                std::to_string(data.size()) + " were given");
  const std::string head = npy_header(d, shape, fortran_order, big_endian);
  atomic_writer out(path, "the .npy file", head.size() + data.size());
  out.write(head);
  out.write(data);
  out.commit();
}

}  // namespace spruce::io
