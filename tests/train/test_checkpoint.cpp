// safetensors checkpoints of the example training library (train/checkpoint.hpp): round
// trips, files laid out by hand the way Python's safetensors writes them, every kind of
// corrupt header, all-or-nothing loading and atomic saving.
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "spruce/core/error.hpp"
#include "spruce/core/tensor_ref.hpp"
#include "train/checkpoint.hpp"

#include "io_support.hpp"

namespace fs = std::filesystem;

namespace {

using test_support::contains;
using test_support::error_of;

// One fresh directory per test, named after this file.
struct temp_dir : test_support::temp_dir {
  temp_dir() : test_support::temp_dir("ckpt") {}
};

using bytes = std::vector<char>;

void write_file(const fs::path& p, const bytes& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
  REQUIRE(out.good());
}

// A safetensors file from a header text (padded to a multiple of 8 unless told otherwise)
// and raw data bytes: the layout Python's safetensors writes.
bytes make_file(std::string header, const bytes& data, bool pad = true) {
  if (pad) header.append((8 - header.size() % 8) % 8, ' ');
  bytes b;
  const std::uint64_t n = header.size();
  for (int k = 0; k < 8; ++k) b.push_back(static_cast<char>(n >> (8 * k)));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

bytes float_bytes(const std::vector<float>& v) {
  bytes b(v.size() * sizeof(float));
  if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

spruce::tensor_ref<float> view(std::vector<float>& v, std::initializer_list<std::size_t> shape) {
  const std::vector<std::size_t> s(shape);
  return spruce::tensor_ref<float>(v.data(), std::span<const std::size_t>(s));
}

std::vector<float> iota_vec(std::size_t n, float start) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = start + 0.5f * static_cast<float>(i);
  return v;
}

std::size_t temp_files_in(const fs::path& dir) {
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (contains(e.path().filename().string(), ".tmp.")) ++n;
  return n;
}

// A small model: three tensors, one of them zero-size.
struct model {
  std::vector<float> w = iota_vec(6, 1.0f), b = iota_vec(4, -3.0f), e, s = iota_vec(5, 100.0f);
  std::vector<spruce::named_tensor<float>> params() {
    return {{"layer.weight", view(w, {2, 3})},
            {"layer.bias", view(b, {4})},
            {"empty", view(e, {2, 0})},
            {"deep", view(s, {1, 1, 1, 5})}};
  }
};

}  // namespace

TEST_CASE("safetensors: save and read back, with metadata and a zero-size tensor") {
  temp_dir dir;
  model m;
  const std::map<std::string, std::string> meta = {
      {"format", "pt"},
      {"epoch", "7"},
      {"note", "quote \" backslash \\ newline \n tab \t unicode \xc3\xa9 ctrl \x01"}};
  const fs::path p = dir / "sub" / "dir" / "m.safetensors";  // parents are created
  train::save_safetensors(p, m.params(), meta);

  const bytes raw = test_support::read_file<bytes::value_type>(p);
  REQUIRE(raw.size() >= 8);
  std::uint64_t n = 0;
  for (int k = 7; k >= 0; --k)
    n = (n << 8) | static_cast<unsigned char>(raw[static_cast<std::size_t>(k)]);
  CHECK(n % 8 == 0);
  CHECK(raw[8] == '{');
  CHECK(raw.size() == 8 + n + (6 + 4 + 0 + 5) * 4);
  CHECK(temp_files_in(p.parent_path()) == 0);

  CHECK(train::read_safetensors_metadata(p) == meta);
  const auto all = train::read_safetensors(p);
  REQUIRE(all.size() == 4);
  CHECK(all[0].name == "layer.weight");
  CHECK(all[0].dtype == "F32");
  CHECK(all[0].shape == std::vector<std::int64_t>{2, 3});
  CHECK(all[0].data == m.w);
  CHECK(all[1].name == "layer.bias");
  CHECK(all[1].data == m.b);
  // The zero-size tensor sits at the same offset as the next one; either order is valid.
  for (const auto& t : all) {
    if (t.name == "empty") {
      CHECK(t.shape == std::vector<std::int64_t>{2, 0});
      CHECK(t.data.empty());
    }
    if (t.name == "deep") {
      CHECK(t.shape == std::vector<std::int64_t>{1, 1, 1, 5});
      CHECK(t.data == m.s);
    }
  }

  model fresh;
  for (auto* v : {&fresh.w, &fresh.b, &fresh.s}) std::fill(v->begin(), v->end(), 0.0f);
  train::load_safetensors(p, fresh.params());
  CHECK(fresh.w == m.w);
  CHECK(fresh.b == m.b);
  CHECK(fresh.s == m.s);

  // No metadata and no tensors are both fine.
  train::save_safetensors(dir / "none.safetensors", {});
  CHECK(train::read_safetensors(dir / "none.safetensors").empty());
  CHECK(train::read_safetensors_metadata(dir / "none.safetensors").empty());
  train::load_safetensors(dir / "none.safetensors", {});
}

TEST_CASE("safetensors: overwriting replaces the file, strided destinations are filled") {
  temp_dir dir;
  const fs::path p = dir / "m.safetensors";
  std::vector<float> a = iota_vec(6, 0.0f), b = iota_vec(6, 10.0f);
  train::save_safetensors(p, {{"x", view(a, {2, 3})}});
  train::save_safetensors(p, {{"x", view(b, {2, 3})}}, {{"v", "2"}});
  CHECK(train::read_safetensors(p)[0].data == b);
  CHECK(train::read_safetensors_metadata(p).at("v") == "2");

  // A transposed (strided) view of a 3 x 2 buffer receives the 2 x 3 tensor.
  std::vector<float> buf(6, 0.0f);
  const std::size_t shape[] = {2, 3}, strides[] = {1, 2};
  train::load_safetensors(p, {{"x", spruce::tensor_ref<float>(buf.data(), shape, strides)}});
  for (std::size_t r = 0; r < 2; ++r)
    for (std::size_t c = 0; c < 3; ++c) CHECK(buf[c * 2 + r] == b[r * 3 + c]);

  // Saving a strided view is refused (and writes nothing).
  const std::string msg = error_of([&] {
    train::save_safetensors(dir / "s.safetensors",
                            {{"x", spruce::tensor_ref<float>(buf.data(), shape, strides)}});
  });
  CHECK(contains(msg, "strided"));
  CHECK_FALSE(fs::exists(dir / "s.safetensors"));
}

TEST_CASE("safetensors: files laid out by Python's safetensors load") {
  temp_dir dir;
  // Python writes compact JSON, "__metadata__" first, tensors in any key order; the data
  // section holds them back to back. Here the key order differs from the data order and a
  // name uses a \u escape.
  const std::vector<float> a = {1.5f, -2.0f}, b = {3.0f, 4.0f, 5.0f, 6.0f, 7.0f, 8.0f};
  bytes data = float_bytes(b);
  const bytes tail = float_bytes(a);
  data.insert(data.end(), tail.begin(), tail.end());
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a\u002ebias":{"dtype":"F32","shape":[2],"data_offsets":[24,32]},)"
      R"("conv.weight":{"dtype":"F32","shape":[2,1,3],"data_offsets":[0,24]}})";
  write_file(dir / "py.safetensors", make_file(header, data));
  CHECK(train::read_safetensors_metadata(dir / "py.safetensors") ==
        std::map<std::string, std::string>{{"format", "pt"}});
  const auto all = train::read_safetensors(dir / "py.safetensors");
  REQUIRE(all.size() == 2);
  CHECK(all[0].name == "conv.weight");  // data order
  CHECK(all[0].shape == std::vector<std::int64_t>{2, 1, 3});
  CHECK(all[0].data == b);
  CHECK(all[1].name == "a.bias");
  CHECK(all[1].data == a);

  std::vector<float> ga(2), gb(6);
  train::load_safetensors(dir / "py.safetensors",
                          {{"a.bias", view(ga, {2})}, {"conv.weight", view(gb, {2, 1, 3})}});
  CHECK(ga == a);
  CHECK(gb == b);

  // Whitespace inside the JSON and an unpadded header are valid too.
  const std::string spaced =
      "{ \"x\" : { \"dtype\" : \"F32\", \"shape\" : [ 1 ], \"data_offsets\" : [ 0 , 4 ] } }";
  write_file(dir / "ws.safetensors", make_file(spaced, float_bytes({9.0f}), false));
  CHECK(train::read_safetensors(dir / "ws.safetensors")[0].data == std::vector<float>{9.0f});

  // A scalar (shape []) holds one element.
  write_file(
      dir / "scalar.safetensors",
      make_file(R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})", float_bytes({2.5f})));
  const auto scalar = train::read_safetensors(dir / "scalar.safetensors");
  CHECK(scalar[0].shape.empty());
  CHECK(scalar[0].data == std::vector<float>{2.5f});
}

TEST_CASE("safetensors: load checks names and shapes and changes nothing on a mismatch") {
  temp_dir dir;
  const fs::path p = dir / "m.safetensors";
  model saved;
  train::save_safetensors(p, saved.params());

  model dst;
  for (auto* v : {&dst.w, &dst.b, &dst.s}) std::fill(v->begin(), v->end(), -7.0f);
  const model before = dst;
  auto untouched = [&] { return dst.w == before.w && dst.b == before.b && dst.s == before.s; };

  SUBCASE("shape mismatch") {
    auto params = dst.params();
    params[0].view = view(dst.w, {3, 2});
    const std::string msg = error_of([&] { train::load_safetensors(p, params); });
    CHECK(contains(msg, "'layer.weight'"));
    CHECK(contains(msg, "[2, 3]"));
    CHECK(contains(msg, "[3, 2]"));
    CHECK(untouched());
  }
  SUBCASE("missing name") {
    auto params = dst.params();
    params.push_back({"extra.weight", view(dst.b, {4})});
    const std::string msg = error_of([&] { train::load_safetensors(p, params); });
    CHECK(contains(msg, "'extra.weight'"));
    CHECK(contains(msg, "missing"));
    CHECK(untouched());
  }
  SUBCASE("extra tensor in the file") {
    auto params = dst.params();
    params.erase(params.begin() + 1);
    const std::string msg = error_of([&] { train::load_safetensors(p, params); });
    CHECK(contains(msg, "'layer.bias'"));
    CHECK(contains(msg, "lacks"));
    CHECK(untouched());
  }
  SUBCASE("duplicate destination name") {
    auto params = dst.params();
    params.push_back(params[0]);
    CHECK_THROWS_AS(train::load_safetensors(p, params), spruce::error);
    CHECK(untouched());
  }
  SUBCASE("corrupt file") {
    const bytes whole = test_support::read_file<bytes::value_type>(p);
    REQUIRE(whole.size() > 4);
    // A copy of all but the last four bytes (resize() here trips a GCC 12 -O1 false
    // positive, -Wstringop-overflow on an impossible size).
    const bytes raw(whole.begin(), whole.end() - 4);
    write_file(p, raw);
    CHECK(contains(error_of([&] { train::load_safetensors(p, dst.params()); }), "truncated"));
    CHECK(untouched());
  }
  SUBCASE("missing file") {
    CHECK(
        contains(error_of([&] { train::load_safetensors(dir / "nope.safetensors", dst.params()); }),
                 "nope.safetensors"));
  }
}

TEST_CASE("safetensors: corrupt headers are clear errors") {
  temp_dir dir;
  const fs::path p = dir / "bad.safetensors";
  const bytes d8 = float_bytes({1.0f, 2.0f});
  auto message_for = [&](const bytes& file) {
    write_file(p, file);
    std::string msg = error_of([&] { train::read_safetensors(p); });
    // The metadata reader validates the same header.
    CHECK_THROWS_AS(train::read_safetensors_metadata(p), spruce::error);
    return msg;
  };
  auto header_case = [&](const std::string& header, const bytes& data = {}) {
    return message_for(make_file(header, data.empty() ? float_bytes({1.0f, 2.0f}) : data));
  };

  SUBCASE("too short, bad header length") {
    CHECK(contains(message_for({}), "too short"));
    CHECK(contains(message_for(bytes(5, '\0')), "too short"));
    bytes f = make_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", d8);
    bytes big = f;
    big[0] = static_cast<char>(0xF0);  // header length far past the file
    CHECK(contains(message_for(big), "header length"));
    bytes huge = f;
    huge[7] = static_cast<char>(0x80);  // 2^63
    CHECK(contains(message_for(huge), "header length"));
    bytes zero = f;
    std::fill(zero.begin(), zero.begin() + 8, '\0');
    CHECK(contains(message_for(zero), "header length"));
  }
  SUBCASE("truncated data, trailing data") {
    bytes f = make_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", d8);
    bytes cut(f.begin(), f.end() - 1);
    CHECK(contains(message_for(cut), "truncated"));
    bytes longer = f;
    longer.push_back('\0');
    CHECK(contains(message_for(longer), "trailing"));
  }
  SUBCASE("non-F32 dtype is refused by name; its metadata still reads") {
    const bytes f = make_file(
        R"({"__metadata__":{"k":"v"},"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})", d8);
    write_file(p, f);
    const std::string msg = error_of([&] { train::read_safetensors(p); });
    CHECK(contains(msg, "'h'"));
    CHECK(contains(msg, "F16"));
    CHECK(contains(msg, "F32"));
    CHECK(train::read_safetensors_metadata(p).at("k") == "v");
    std::vector<float> dst(4, -1.0f);
    CHECK(contains(error_of([&] { train::load_safetensors(p, {{"h", view(dst, {4})}}); }), "F16"));
    CHECK(dst == std::vector<float>(4, -1.0f));
  }
  SUBCASE("offsets: overlap, gap, reversed, out of range, size mismatch") {
    CHECK(contains(header_case(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})"),
                   "overlap"));
    CHECK(contains(header_case(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})"),
                   "belong to no tensor"));
    CHECK(contains(header_case(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})"),
                   "end before"));
    CHECK(contains(header_case(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})"),
                   "truncated"));
    CHECK(contains(header_case(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})"),
                   "shape [3]"));
    CHECK(contains(
        header_case(
            R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})"),
        "too large"));
    CHECK(contains(
        header_case(
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,99999999999999999999999]}})"),
        "too large"));
  }
  SUBCASE("malformed JSON and schema violations") {
    const std::vector<std::string> headers = {
        R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})",     // unterminated object
        R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} x)",  // text after the object
        R"({"a" {"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",    // missing colon
        R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],}})",   // trailing comma
        R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}})",
        R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",           // negative dim
        R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})",          // float dim
        R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})",              // one offset
        R"({"a":{"dtype":"X9","shape":[2],"data_offsets":[0,8]}})",             // unknown dtype
        R"({"a":{"dtype":"F32","shape":[2]}})",                                 // no offsets
        R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}})",  // unknown field
        R"({"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
        R"({"a":[1,2]})",  // not an object
        R"({"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
        R"({"__metadata__":[],"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
        R"({"a\q":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",      // bad escape
        R"({"a\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",  // lone surrogate
        R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}})",
        R"({"a":{"dtype":"F32","shape":[02],"data_offsets":[0,8]}})",            // leading zero
        R"({"a":{"dtype":F32,"shape":[2],"data_offsets":[0,8]}})",               // bare word
        "{\"a\x01\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",  // raw control char
        "[1,2,3]",
        "{\"a\":" + std::string(2000, '[') + std::string(2000, ']') + "}",  // nesting bomb
        "{\"a\":\"" + std::string(300, 'x'),
    };
    for (const auto& h : headers) {
      CAPTURE(h);
      const std::string msg = header_case(h);
      CHECK(contains(msg, "safetensors file"));
    }
    // A header must be an object that starts at its first byte.
    CHECK(contains(header_case(R"( {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})"),
                   "start with"));
  }
}

TEST_CASE("safetensors: every truncation and byte flip of a valid file fails cleanly") {
  temp_dir dir;
  model m;
  const fs::path good = dir / "good.safetensors", p = dir / "x.safetensors";
  train::save_safetensors(good, m.params(), {{"k", "v"}});
  const bytes raw = test_support::read_file<bytes::value_type>(good);
  for (std::size_t len = 0; len < raw.size(); ++len) {
    write_file(p, bytes(raw.begin(), raw.begin() + static_cast<std::ptrdiff_t>(len)));
    CAPTURE(len);
    CHECK_THROWS_AS(train::read_safetensors(p), spruce::error);
  }
  // Flipping header bytes either still gives a valid file or a spruce::error, never a crash.
  std::uint64_t n = 0;
  for (int k = 7; k >= 0; --k)
    n = (n << 8) | static_cast<unsigned char>(raw[static_cast<std::size_t>(k)]);
  std::size_t failures = 0;
  for (std::size_t i = 0; i < 8 + n; ++i)
    for (const unsigned char x : {0x01, 0x20, 0x80, 0xFF}) {
      bytes f = raw;
      f[i] = static_cast<char>(static_cast<unsigned char>(f[i]) ^ x);
      write_file(p, f);
      try {
        model back;
        train::load_safetensors(p, back.params());
      } catch (const spruce::error&) {
        ++failures;
      }
    }
  CHECK(failures > 0);
}

TEST_CASE("save_safetensors: refuses bad inputs before writing anything") {
  temp_dir dir;
  const fs::path p = dir / "m.safetensors";
  std::vector<float> a(4, 1.0f);
  CHECK(contains(error_of([&] {
                   train::save_safetensors(p, {{"x", view(a, {4})}, {"x", view(a, {2, 2})}});
                 }),
                 "twice"));
  CHECK(contains(error_of([&] {
                   train::save_safetensors(p, {{"", view(a, {4})}});
                 }),
                 "empty name"));
  CHECK(contains(error_of([&] {
                   train::save_safetensors(p, {{"__metadata__", view(a, {4})}});
                 }),
                 "reserved"));
  CHECK(contains(error_of([&] {
                   train::save_safetensors(p, {{"x", spruce::tensor_ref<float>()}});
                 }),
                 "default-constructed"));
  CHECK(contains(error_of([&] {
                   train::save_safetensors(dir.path / "", {{"x", view(a, {4})}});
                 }),
                 "not a file path"));
  CHECK(fs::is_empty(dir.path));
}

TEST_CASE("save_safetensors: atomic replacement, no temporary file left behind") {
  temp_dir dir;
  std::vector<float> old_w = iota_vec(16, 0.0f), new_w = iota_vec(1 << 16, 5.0f);
  const fs::path p = dir / "ckpt.safetensors";
  train::save_safetensors(p, {{"w", view(old_w, {16})}});
  const bytes original = test_support::read_file<bytes::value_type>(p);

  SUBCASE("a directory that cannot be written") {
    const fs::path ro = dir / "ro";
    fs::create_directories(ro);
    fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
    const bool enforced = ::access(ro.c_str(), W_OK) != 0;  // root writes anyway
    if (enforced) {
      CHECK(contains(error_of([&] {
                       train::save_safetensors(ro / "m.safetensors", {{"w", view(old_w, {16})}});
                     }),
                     "cannot create"));
      fs::permissions(ro, fs::perms::owner_all);
      CHECK(fs::is_empty(ro));
    } else {
      MESSAGE("running as root: permission bits are not enforced; using /proc/self instead");
    }
    fs::permissions(ro, fs::perms::owner_all);
    // No user can create files in /proc/self.
    if (fs::is_directory("/proc/self")) {
      CHECK_THROWS_AS(
          train::save_safetensors("/proc/self/m.safetensors", {{"w", view(old_w, {16})}}),
          spruce::error);
      CHECK_FALSE(fs::exists("/proc/self/m.safetensors"));
    }
    // A parent that is a regular file cannot be created.
    CHECK_THROWS_AS(train::save_safetensors(p / "m.safetensors", {{"w", view(old_w, {16})}}),
                    spruce::error);
    CHECK(test_support::read_file<bytes::value_type>(p) == original);
  }

  SUBCASE("a write that fails half-way keeps the old file") {
    // Limit the size of files this process may write: the new checkpoint (256 KiB) cannot
    // be completed, the old one (a few bytes) is already there.
    struct rlimit old_limit {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old_limit;
    lim.rlim_cur = 64 * 1024;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lim) == 0);
    const std::string msg = error_of([&] {
      train::save_safetensors(p, {{"w", view(new_w, {1 << 16})}});
    });
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    std::signal(SIGXFSZ, old_handler);
    CHECK(contains(msg, "cannot write"));
    CHECK(test_support::read_file<bytes::value_type>(p) == original);
    CHECK(temp_files_in(dir.path) == 0);
    // With the limit lifted the same save replaces the file completely.
    train::save_safetensors(p, {{"w", view(new_w, {1 << 16})}});
    CHECK(train::read_safetensors(p)[0].data == new_w);
    CHECK(temp_files_in(dir.path) == 0);
  }

  SUBCASE("the rename fails: the target is a directory") {
    const fs::path target = dir / "is_a_dir";
    fs::create_directories(target / "inside");
    CHECK(contains(error_of([&] {
                     train::save_safetensors(target, {{"w", view(old_w, {16})}});
                   }),
                   "directory"));
    CHECK(fs::is_directory(target / "inside"));
    CHECK(temp_files_in(dir.path) == 0);
  }
}
