#include "train/checkpoint.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <string_view>
#include <system_error>
#include <utility>

#include "spruce/core/error.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/io/atomic_file.hpp"

namespace train {
namespace {

// The data section is the host's float bytes as they are; safetensors is little-endian.
static_assert(std::endian::native == std::endian::little,
              "train/checkpoint.cpp writes and reads floats as raw little-endian bytes");
static_assert(sizeof(float) == 4 && std::numeric_limits<float>::is_iec559,
              "F32 must be IEEE binary32");

using spruce::error;

std::string quoted(const std::filesystem::path& p) {
  return std::string("'").append(p.string()).append("'");
}

// The same cap the reference implementation uses: a header past it is corrupt, and
// refusing it keeps a damaged length field from turning into a huge allocation.
constexpr std::uint64_t max_header_bytes = 100u << 20;

// ---------------------------------------------------------------------------------------
// A small JSON reader: enough of RFC 8259 for a safetensors header (objects, arrays,
// strings with escapes, numbers kept as their text, true/false/null), with duplicate keys
// kept so the caller can reject them, and a depth cap so hostile nesting cannot exhaust
// the stack.

struct json {
  enum class kind { null, boolean, number, string, array, object };
  kind k = kind::null;
  std::string text;               // string value, or a number's literal
  bool flag = false;              // boolean value
  std::vector<json> items;        // array elements, or object values
  std::vector<std::string> keys;  // object keys, parallel to items
};

class json_parser {
 public:
  json_parser(std::string_view s, const std::filesystem::path& file) : s_(s), file_(file) {}

  json parse_document() {
    skip_ws();
    json v = parse_value(0);
    skip_ws();
    if (i_ != s_.size()) fail("unexpected text after the top-level value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw error(
        std::string("safetensors file ")
            .append(quoted(file_))
            .append(" has a malformed JSON header (")
            .append(what)
            .append(" at byte ")
            .append(std::to_string(i_))
            .append(
                " of the header); the file is corrupt or not a safetensors file, write it again"));
  }

  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }

  bool eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }

  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '").append(1, c).append("'"));
  }

  json parse_value(int depth) {
    if (depth > 32) fail("nesting deeper than 32 levels");
    if (i_ >= s_.size()) fail("unexpected end of the header");
    json v;
    const char c = s_[i_];
    if (c == '{') {
      v.k = json::kind::object;
      ++i_;
      skip_ws();
      if (eat('}')) return v;
      for (;;) {
        skip_ws();
        if (i_ >= s_.size() || s_[i_] != '"') fail("expected a string key");
        v.keys.push_back(parse_string());
        skip_ws();
        expect(':');
        skip_ws();
        v.items.push_back(parse_value(depth + 1));
        skip_ws();
        if (eat('}')) return v;
        expect(',');
      }
    }
    if (c == '[') {
      v.k = json::kind::array;
      ++i_;
      skip_ws();
      if (eat(']')) return v;
      for (;;) {
        skip_ws();
        v.items.push_back(parse_value(depth + 1));
        skip_ws();
        if (eat(']')) return v;
        expect(',');
      }
    }
    if (c == '"') {
      v.k = json::kind::string;
      v.text = parse_string();
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.k = json::kind::number;
      v.text = parse_number();
      return v;
    }
    for (const auto& [word, val] :
         {std::pair<std::string_view, int>{"true", 1}, {"false", 0}, {"null", -1}}) {
      if (s_.substr(i_, word.size()) == word) {
        i_ += word.size();
        v.k = val < 0 ? json::kind::null : json::kind::boolean;
        v.flag = val == 1;
        return v;
      }
    }
    fail("unexpected character");
  }

  static bool digit(char c) { return c >= '0' && c <= '9'; }

  std::string parse_number() {
    const std::size_t start = i_;
    eat('-');
    if (i_ >= s_.size() || !digit(s_[i_])) fail("malformed number");
    if (s_[i_] == '0') {
      ++i_;
    } else {
      while (i_ < s_.size() && digit(s_[i_])) ++i_;
    }
    if (eat('.')) {
      if (i_ >= s_.size() || !digit(s_[i_])) fail("malformed number");
      while (i_ < s_.size() && digit(s_[i_])) ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (!eat('+')) eat('-');
      if (i_ >= s_.size() || !digit(s_[i_])) fail("malformed number");
      while (i_ < s_.size() && digit(s_[i_])) ++i_;
    }
    return std::string(s_.substr(start, i_ - start));
  }

  unsigned hex4() {
    if (s_.size() - i_ < 4) fail("truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= static_cast<unsigned>(c - 'A' + 10);
      else
        fail("bad hex digit in a \\u escape");
    }
    return v;
  }

  static void put_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character inside a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      switch (const char e = s_[i_++]; e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (!(eat('\\') && eat('u'))) fail("lone high surrogate in a \\u escape");
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail("bad low surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            fail("lone low surrogate in a \\u escape");
          }
          put_utf8(out, cp);
          break;
        }
        default:
          fail("unknown escape");
      }
    }
  }

  std::string_view s_;
  const std::filesystem::path& file_;
  std::size_t i_ = 0;
};

void json_escape(std::string& out, const std::string& s) {
  out += '"';
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      static const char hex[] = "0123456789abcdef";
      out += "\\u00";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  out += '"';
}

// ---------------------------------------------------------------------------------------
// Header validation.

std::size_t dtype_size(const std::string& d) {
  static const std::pair<const char*, std::size_t> table[] = {
      {"F64", 8}, {"F32", 4}, {"F16", 2},  {"BF16", 2},    {"I64", 8},
      {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U64", 8},     {"U32", 4},
      {"U16", 2}, {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  for (const auto& [name, size] : table)
    if (d == name) return size;
  return 0;
}

struct entry {
  std::string name;
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0, end = 0;
};

struct header {
  std::map<std::string, std::string> metadata;
  std::vector<entry> entries;  // sorted by data offset
  std::uint64_t data_start = 0;
  std::uint64_t data_size = 0;
};

std::string shape_text(const std::vector<std::uint64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

class header_reader {
 public:
  explicit header_reader(const std::filesystem::path& path) : path_(path) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw error(
        std::string("safetensors file ")
            .append(quoted(path_))
            .append(": ")
            .append(what)
            .append("; the file is corrupt or was not written as safetensors, write it again"));
  }

  std::uint64_t to_u64(const json& v, const std::string& what) const {
    if (v.k != json::kind::number) fail(what + " is not a number");
    std::uint64_t x = 0;
    for (const char c : v.text) {
      if (c < '0' || c > '9') fail(what + " (" + v.text + ") is not a non-negative integer");
      const auto d = static_cast<std::uint64_t>(c - '0');
      if (x > (std::numeric_limits<std::uint64_t>::max() - d) / 10)
        fail(what + " (" + v.text + ") is too large");
      x = x * 10 + d;
    }
    return x;
  }

  // Opens the file, reads and validates the header; leaves `in` at the data section.
  header read(std::ifstream& in) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path_, ec))
      throw error(std::string("safetensors file ")
                      .append(quoted(path_))
                      .append(" does not exist or is not a regular file; check the path"));
    const std::uint64_t file_size = std::filesystem::file_size(path_, ec);
    if (ec)
      throw error(std::string("cannot read the size of ")
                      .append(quoted(path_))
                      .append(": ")
                      .append(ec.message()));
    in.open(path_, std::ios::binary);
    if (!in)
      throw error(std::string("cannot open safetensors file ")
                      .append(quoted(path_))
                      .append(": ")
                      .append(std::strerror(errno))
                      .append("; check its permissions"));
    if (file_size < 8)
      fail(std::string("it is ")
               .append(std::to_string(file_size))
               .append(" bytes, too short for the 8-byte header length"));
    unsigned char len_bytes[8];
    if (!in.read(reinterpret_cast<char*>(len_bytes), 8)) fail("cannot read the header length");
    std::uint64_t n = 0;
    for (int k = 7; k >= 0; --k) n = (n << 8) | len_bytes[k];
    if (n < 2 || n > file_size - 8 || n > max_header_bytes)
      fail(std::string("the header length field says ")
               .append(std::to_string(n))
               .append(" bytes but the file has ")
               .append(std::to_string(file_size - 8))
               .append(" bytes after it (and a header must be 2 to 100 MiB)"));
    std::string text(n, '\0');
    if (!in.read(text.data(), static_cast<std::streamsize>(n))) fail("cannot read the header");
    if (text[0] != '{') fail("the header does not start with '{'");

    header h;
    h.data_start = 8 + n;
    h.data_size = file_size - 8 - n;
    const json root = json_parser(text, path_).parse_document();
    if (root.k != json::kind::object) fail("the header is not a JSON object");

    std::set<std::string> seen;
    for (std::size_t m = 0; m < root.keys.size(); ++m) {
      const std::string& key = root.keys[m];
      const json& val = root.items[m];
      if (!seen.insert(key).second)
        fail(std::string("the header lists '").append(key).append("' twice"));
      if (key == "__metadata__") {
        if (val.k != json::kind::object) fail("__metadata__ is not a JSON object");
        for (std::size_t j = 0; j < val.keys.size(); ++j) {
          if (val.items[j].k != json::kind::string)
            fail(std::string("__metadata__ value '")
                     .append(val.keys[j])
                     .append("' is not a string"));
          if (!h.metadata.emplace(val.keys[j], val.items[j].text).second)
            fail(std::string("__metadata__ lists '").append(val.keys[j]).append("' twice"));
        }
        continue;
      }
      h.entries.push_back(read_entry(key, val));
    }

    // The tensors must tile the data section exactly: sorted by offset, each begins where
    // the previous ends, the first at 0 and the last at the end of the file.
    std::stable_sort(h.entries.begin(), h.entries.end(), [](const entry& a, const entry& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    std::uint64_t at = 0;
    const entry* prev = nullptr;
    for (const entry& e : h.entries) {
      if (e.end > h.data_size)
        fail(std::string("tensor '")
                 .append(e.name)
                 .append("' ends at data byte ")
                 .append(std::to_string(e.end))
                 .append(" but the data section has only ")
                 .append(std::to_string(h.data_size))
                 .append(" bytes (truncated file)"));
      if (e.begin < at)
        fail(std::string("tensors '")
                 .append(prev ? prev->name : std::string())
                 .append("' and '")
                 .append(e.name)
                 .append("' overlap (data_offsets [")
                 .append(std::to_string(prev ? prev->begin : 0))
                 .append(", ")
                 .append(std::to_string(at))
                 .append("] and [")
                 .append(std::to_string(e.begin))
                 .append(", ")
                 .append(std::to_string(e.end))
                 .append("])"));
      if (e.begin > at)
        fail(std::string("data bytes ")
                 .append(std::to_string(at))
                 .append(" to ")
                 .append(std::to_string(e.begin))
                 .append(" before tensor '")
                 .append(e.name)
                 .append("' belong to no tensor"));
      at = e.end;
      prev = &e;
    }
    if (at != h.data_size)
      fail(std::string("the tensors cover ")
               .append(std::to_string(at))
               .append(" data bytes but the file has ")
               .append(std::to_string(h.data_size))
               .append(" (trailing bytes)"));
    return h;
  }

 private:
  entry read_entry(const std::string& name, const json& val) const {
    const std::string who = std::string("tensor '").append(name).append("'");
    if (val.k != json::kind::object) fail(who + " is not described by a JSON object");
    entry e;
    e.name = name;
    bool has_dtype = false, has_shape = false, has_offsets = false;
    for (std::size_t j = 0; j < val.keys.size(); ++j) {
      const std::string& field = val.keys[j];
      const json& f = val.items[j];
      if (field == "dtype" && !has_dtype) {
        if (f.k != json::kind::string) fail(who + " has a dtype that is not a string");
        e.dtype = f.text;
        has_dtype = true;
      } else if (field == "shape" && !has_shape) {
        if (f.k != json::kind::array) fail(who + " has a shape that is not an array");
        for (const json& d : f.items) e.shape.push_back(to_u64(d, who + " shape entry"));
        has_shape = true;
      } else if (field == "data_offsets" && !has_offsets) {
        if (f.k != json::kind::array || f.items.size() != 2)
          fail(who + " data_offsets is not a [begin, end] pair");
        e.begin = to_u64(f.items[0], who + " data_offsets begin");
        e.end = to_u64(f.items[1], who + " data_offsets end");
        has_offsets = true;
      } else {
        fail(who + " has an unexpected or repeated field '" + field + "'");
      }
    }
    if (!has_dtype || !has_shape || !has_offsets)
      fail(who + " lacks one of dtype, shape, data_offsets");
    const std::size_t esize = dtype_size(e.dtype);
    if (esize == 0) fail(who + " has unknown dtype '" + e.dtype + "'");
    if (e.end < e.begin)
      fail(who + " has data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
           "] that end before they begin");
    std::uint64_t bytes = esize;
    for (const std::uint64_t d : e.shape) {
      if (d != 0 && bytes > std::numeric_limits<std::uint64_t>::max() / d)
        fail(who + " has a shape too large to exist");
      bytes *= d;
    }
    if (bytes != e.end - e.begin)
      fail(who + " has shape " + shape_text(e.shape) + " of dtype " + e.dtype + " (" +
           std::to_string(bytes) + " bytes) but data_offsets span " +
           std::to_string(e.end - e.begin) + " bytes");
    return e;
  }

  const std::filesystem::path& path_;
};

// Header plus the whole data section in memory (read completely before anything is used).
struct loaded_file {
  header h;
  std::vector<char> data;
};

loaded_file load_all(const std::filesystem::path& path) {
  std::ifstream in;
  header_reader r(path);
  loaded_file f;
  f.h = r.read(in);
  f.data.resize(f.h.data_size);
  if (f.h.data_size > 0 && !in.read(f.data.data(), static_cast<std::streamsize>(f.h.data_size)))
    r.fail("cannot read the data section (the file shrank while being read?)");
  return f;
}

void require_f32(const std::filesystem::path& path, const entry& e) {
  if (e.dtype != "F32")
    throw error(std::string("safetensors file ")
                    .append(quoted(path))
                    .append(": tensor '")
                    .append(e.name)
                    .append("' has dtype ")
                    .append(e.dtype)
                    .append("; spruce_train reads F32 only (save it as float32, e.g. "
                            "tensor.float() in PyTorch)"));
}

std::string view_shape(const spruce::tensor_ref<float>& v) {
  return spruce::shape_string(v.shape());
}

bool same_shape(const spruce::tensor_ref<float>& v, const std::vector<std::uint64_t>& s) {
  if (v.rank() != s.size()) return false;
  for (std::size_t r = 0; r < s.size(); ++r)
    if (v.extent(r) != s[r]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------
// Writing.

}  // namespace

void save_safetensors(const std::filesystem::path& path,
                      const std::vector<spruce::named_tensor<float>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Validate everything before touching the file system.
  if (path.empty() || !path.has_filename())
    throw error(std::string("save_safetensors: ")
                    .append(quoted(path))
                    .append(" is not a file path; pass e.g. 'model.safetensors'"));
  std::set<std::string> names;
  for (const auto& t : tensors) {
    if (t.name.empty())
      throw error(
          "save_safetensors: a tensor has an empty name; give every tensor its parameter name");
    if (t.name == "__metadata__")
      throw error("save_safetensors: '__metadata__' is reserved by the format; rename the tensor");
    if (!names.insert(t.name).second)
      throw error(std::string("save_safetensors: tensor '")
                      .append(t.name)
                      .append("' is listed twice; names must be unique"));
    if (t.view.rank() == 0)
      throw error(std::string("save_safetensors: tensor '")
                      .append(t.name)
                      .append("' has an empty (default-constructed) view; bind it to its storage"));
    if (!t.view.is_contiguous())
      throw error(std::string("save_safetensors: tensor '")
                      .append(t.name)
                      .append("' is a strided view; save a contiguous copy of it"));
  }

  std::string head = "{";
  if (!metadata.empty()) {
    head += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!first) head += ',';
      first = false;
      json_escape(head, k);
      head += ':';
      json_escape(head, v);
    }
    head += '}';
  }
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (head.size() > 1) head += ',';
    json_escape(head, t.name);
    head += ":{\"dtype\":\"F32\",\"shape\":[";
    for (std::size_t r = 0; r < t.view.rank(); ++r) {
      if (r) head += ',';
      head += std::to_string(t.view.extent(r));
    }
    const std::uint64_t bytes = std::uint64_t{t.view.size()} * sizeof(float);
    head += "],\"data_offsets\":[";
    head += std::to_string(offset);
    head += ',';
    head += std::to_string(offset + bytes);
    head += "]}";
    offset += bytes;
  }
  head += '}';
  head.append((8 - head.size() % 8) % 8, ' ');
  if (head.size() > max_header_bytes)
    throw error(
        "save_safetensors: the header would exceed 100 MiB; save fewer tensors or shorter "
        "metadata");
  unsigned char len_bytes[8];
  for (int k = 0; k < 8; ++k)
    len_bytes[k] = static_cast<unsigned char>(std::uint64_t{head.size()} >> (8 * k));

  const std::filesystem::path parent = path.parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec)
      throw error(std::string("save_safetensors: cannot create directory ")
                      .append(quoted(parent))
                      .append(": ")
                      .append(ec.message())
                      .append("; choose a writable location"));
  }

  // The header, then each tensor's bytes straight from its storage (never copied).
  std::vector<std::string_view> parts;
  parts.reserve(tensors.size() + 2);
  parts.emplace_back(reinterpret_cast<const char*>(len_bytes), 8);
  parts.emplace_back(head);
  for (const auto& t : tensors)
    if (t.view.size() > 0)
      parts.emplace_back(reinterpret_cast<const char*>(t.view.data()), t.view.size() * sizeof(float));
  spruce::io::write_file_atomically(path, parts, "the checkpoint");
}

void load_safetensors(const std::filesystem::path& path,
                      const std::vector<spruce::named_tensor<float>>& into) {
  std::map<std::string, const spruce::named_tensor<float>*> wanted;
  for (const auto& t : into) {
    if (!wanted.emplace(t.name, &t).second)
      throw error(std::string("load_safetensors: tensor '")
                      .append(t.name)
                      .append("' is listed twice in the destination; names must be unique"));
    if (t.view.rank() == 0)
      throw error(std::string("load_safetensors: destination '")
                      .append(t.name)
                      .append("' has an empty (default-constructed) view; bind it to its storage"));
  }

  const loaded_file f = load_all(path);

  // Collect every problem, so one message tells the whole story.
  std::string problems;
  auto add = [&](const std::string& p) { problems.append(problems.empty() ? "" : "; ").append(p); };
  std::set<std::string> found;
  for (const entry& e : f.h.entries) {
    const auto it = wanted.find(e.name);
    if (it == wanted.end()) {
      add(std::string("the file has tensor '")
              .append(e.name)
              .append("' ")
              .append(shape_text(e.shape))
              .append(" that the model lacks"));
      continue;
    }
    found.insert(e.name);
    const auto& view = it->second->view;
    if (e.dtype != "F32")
      add(std::string("'")
              .append(e.name)
              .append("' has dtype ")
              .append(e.dtype)
              .append(", not F32"));
    else if (!same_shape(view, e.shape))
      add(std::string("'")
              .append(e.name)
              .append("' has shape ")
              .append(shape_text(e.shape))
              .append(" in the file but ")
              .append(view_shape(view))
              .append(" in the model"));
  }
  for (const auto& [name, t] : wanted)
    if (!found.count(name))
      add(std::string("'")
              .append(name)
              .append("' ")
              .append(view_shape(t->view))
              .append(" is missing from the file"));
  if (!problems.empty())
    throw error(std::string("load_safetensors: ")
                    .append(quoted(path))
                    .append(" does not match the model: ")
                    .append(problems)
                    .append("; load a checkpoint saved from the same architecture"));

  for (const entry& e : f.h.entries) {
    const auto& view = wanted.at(e.name)->view;
    const char* src = f.data.data() + e.begin;
    if (view.is_contiguous()) {
      if (view.size() > 0) std::memcpy(view.data(), src, view.size() * sizeof(float));
    } else {
      for (std::size_t i = 0; i < view.size(); ++i)
        std::memcpy(view.data() + view.offset_of(i), src + i * sizeof(float), sizeof(float));
    }
  }
}

std::map<std::string, std::string> read_safetensors_metadata(const std::filesystem::path& path) {
  std::ifstream in;
  return header_reader(path).read(in).metadata;
}

std::vector<stored_tensor> read_safetensors(const std::filesystem::path& path) {
  const loaded_file f = load_all(path);
  for (const entry& e : f.h.entries) require_f32(path, e);
  std::vector<stored_tensor> out;
  out.reserve(f.h.entries.size());
  for (const entry& e : f.h.entries) {
    stored_tensor t;
    t.name = e.name;
    t.dtype = e.dtype;
    for (const std::uint64_t d : e.shape) {
      if (d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        throw error(std::string("safetensors file ")
                        .append(quoted(path))
                        .append(": tensor '")
                        .append(e.name)
                        .append("' has a dimension too large; the file is corrupt"));
      t.shape.push_back(static_cast<std::int64_t>(d));
    }
    t.data.resize((e.end - e.begin) / sizeof(float));
    if (!t.data.empty()) std::memcpy(t.data.data(), f.data.data() + e.begin, e.end - e.begin);
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace train
