// The opt-in file formats (spruce/io: dtypes, safetensors, .npy, the mapped file and the
// streaming atomic writer) and the spruce-prune program's masks against the library's API.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "spruce/spruce.hpp"
#include "spruce/io/dtype.hpp"
#include "spruce/io/npy.hpp"
#include "spruce/io/safetensors.hpp"

namespace fs = std::filesystem;
using namespace spruce;
using io::dtype;

namespace {

struct scratch_dir {
  fs::path path;
  scratch_dir() {
    path = fs::temp_directory_path() / ("spruce_formats_" + std::to_string(std::random_device{}()));
    fs::create_directories(path);
  }
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const std::string& s) const { return path / s; }
};

std::vector<std::byte> slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  if (!c.empty()) std::memcpy(out.data(), c.data(), c.size());
  return out;
}

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const spruce::error& e) {
    return e.what();
  }
  return "(no error)";
}

bool contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

// Random bytes of `n` elements of `d`; floating dtypes get finite values with ties and zeros.
std::vector<std::byte> random_tensor(dtype d, std::size_t n, std::mt19937& rng, bool ties = false) {
  std::vector<std::byte> out(n * io::dtype_size(d));
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (std::size_t i = 0; i < n; ++i) {
    float v = g(rng);
    if (ties) v = std::array<float, 5>{0.5f, -0.5f, 0.25f, 0.0f, -2.0f}[rng() % 5];
    std::byte* p = out.data() + i * io::dtype_size(d);
    switch (d) {
      case dtype::f32: std::memcpy(p, &v, 4); break;
      case dtype::f64: { const double x = v; std::memcpy(p, &x, 8); break; }
      case dtype::f16: { const auto h = io::float_to_f16(v); std::memcpy(p, &h, 2); break; }
      case dtype::bf16: { const auto h = io::float_to_bf16(v); std::memcpy(p, &h, 2); break; }
      default:
        for (std::size_t k = 0; k < io::dtype_size(d); ++k) p[k] = static_cast<std::byte>(rng());
    }
  }
  return out;
}

struct stored {
  io::safetensors_spec spec;
  std::vector<std::byte> data;
};

void write_model(const fs::path& p, const std::vector<stored>& ts, const std::map<std::string, std::string>& meta) {
  std::vector<io::safetensors_spec> specs;
  for (const auto& t : ts) specs.push_back(t.spec);
  io::safetensors_writer w(p, specs, meta);
  for (const auto& t : ts) w.write(std::span<const std::byte>(t.data));
  w.commit();
}

// A small transformer-like model: embeddings, attention and MLP weights (one with many
// ties), biases, norms, an I64 buffer, a rank-4 conv weight.
std::vector<stored> transformer(dtype d, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<stored> t;
  auto add = [&](const std::string& name, dtype dt, std::vector<std::size_t> shape, bool ties = false) {
    std::size_t n = 1;
    for (auto x : shape) n *= x;
    t.push_back({{name, dt, shape}, random_tensor(dt, n, rng, ties)});
  };
  add("embed_tokens.weight", d, {40, 16});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    add(p + "attn.q_proj.weight", d, {16, 16});
    add(p + "attn.k_proj.weight", d, {16, 16}, true);
    add(p + "attn.q_proj.bias", d, {16});
    add(p + "mlp.up_proj.weight", d, {32, 16});
    add(p + "mlp.down_proj.weight", d, {16, 32});
    add(p + "input_layernorm.weight", d, {16});
  }
  add("position_ids", dtype::i64, {1, 8});
  add("head.conv.weight", d, {8, 4, 3, 3});
  return t;
}

const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "spruce test"}};

#ifdef SPRUCE_PRUNE_EXE
int run_cli(const std::string& args, const fs::path& log) {
  const std::string cmd = std::string(SPRUCE_PRUNE_EXE) + " " + args + " > '" + log.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

bool selected(const stored& t) {
  const std::string& n = t.spec.name;
  return (n.find("proj.weight") != std::string::npos || n.find("conv.weight") != std::string::npos);
}

std::vector<float> as_floats(const stored& t) {
  std::size_t n = 1;
  for (auto x : t.spec.shape) n *= x;
  std::vector<float> v(n);
  io::to_values(t.spec.dtype, t.data.data(), n, v.data());
  return v;
}

// Output tensor bytes `b` == input where `m` keeps, all-zero bytes where it prunes.
void check_applied(const stored& in, std::span<const std::byte> b, const mask& m) {
  REQUIRE(b.size() == in.data.size());
  const std::size_t es = io::dtype_size(in.spec.dtype);
  REQUIRE(m.size() * es == b.size());
  std::size_t bad = 0;
  const std::vector<std::byte> zero(es, std::byte{0});
  for (std::size_t i = 0; i < m.size(); ++i) {
    const std::byte* want = m.data()[i] ? in.data.data() + i * es : zero.data();
    bad += std::memcmp(b.data() + i * es, want, es) != 0;
  }
  CHECK_MESSAGE(bad == 0, in.spec.name << ": " << bad << " elements differ from the library's mask");
}

void check_applied(const stored& in, const io::safetensors_file& out, const mask& m) {
  check_applied(in, out.bytes(out.at(in.spec.name)), m);
}

void check_untouched(const std::vector<stored>& model, const io::safetensors_file& out) {
  CHECK(out.metadata() == meta);
  CHECK(out.tensors().size() == model.size());
  for (const auto& t : model)
    if (!selected(t)) {
      const auto b = out.bytes(out.at(t.spec.name));
      CHECK_MESSAGE(std::equal(b.begin(), b.end(), t.data.begin(), t.data.end()), t.spec.name);
    }
}

template <class G, class C, class S>
mask reference_mask(const G& g, const C& c, const S&, const stored& t, double ratio) {
  const std::vector<float> v = as_floats(t);
  const tensor_ref<const float> w(v.data(), std::span<const std::size_t>(t.spec.shape));
  if constexpr (granularity::n_m_granularity<G>) {
    (void)ratio;
    return pruner<G, C>{g, c}.compute(w, t.spec.name);
  } else {
    const S rule = amount_rule<S>::make(amount(ratio), spruce::detail::groups_of(g, w.shape(), t.spec.name), t.spec.name);
    return pruner<G, C, S>{g, c, rule}.compute(w, t.spec.name);
  }
}

template <class G, class C, class S>
void per_tensor_case(const G& g, const std::string& gflag, const C& c, const std::string& cflag, const S& s,
                     const std::string& rflag, dtype d) {
  CAPTURE(gflag);
  CAPTURE(cflag);
  CAPTURE(rflag);
  CAPTURE(std::string(io::dtype_name(d)));
  scratch_dir dir;
  const auto model = transformer(d, 7);
  write_model(dir / "in.safetensors", model, meta);
  const std::string args = "prune '" + (dir / "in.safetensors").string() + "' -o '" + (dir / "out.safetensors").string() +
                           "' --include '*proj.weight' --include '*conv.weight' --granularity " + gflag +
                           " --criterion " + cflag + " --rule " + rflag + " -q" +
                           (granularity::n_m_granularity<G> ? "" : " --sparsity 0.5");
  REQUIRE(run_cli(args, dir / "log") == 0);
  const io::safetensors_file out(dir / "out.safetensors");
  check_untouched(model, out);
  for (const auto& t : model)
    if (selected(t)) check_applied(t, out, reference_mask(g, c, s, t, 0.5));
}
#endif

}  // namespace

TEST_CASE("dtype: F16 and BF16 convert exactly to float and back, all 65536 patterns") {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const auto b = static_cast<std::uint16_t>(h);
    const float f = io::f16_to_float(b);
#ifdef __FLT16_MAX__
    if (!std::isnan(f)) REQUIRE(f == static_cast<float>(std::bit_cast<_Float16>(b)));
#endif
    REQUIRE(io::float_to_f16(f) == b);
    const float g = io::bf16_to_float(b);
    REQUIRE(std::bit_cast<std::uint32_t>(g) == (h << 16));
    REQUIRE(io::float_to_bf16(g) == b);
  }
#ifdef __FLT16_MAX__
  // Rounding of arbitrary floats agrees with the compiler's own _Float16 (ties to even).
  std::mt19937 rng(3);
  for (int i = 0; i < 200000; ++i) {
    const float f = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
    if (std::isnan(f)) continue;
    REQUIRE(io::float_to_f16(f) == std::bit_cast<std::uint16_t>(static_cast<_Float16>(f)));
  }
#endif
  // The order spruce-prune selects BF16 / F16 tensors in without a float copy: the float
  // magnitude key of the converted value, which for BF16 is (bits & 0x7fff) << 16 and for
  // both is monotone in bits & 0x7fff (NaN patterns outside the valid key range).
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const auto b = static_cast<std::uint16_t>(h);
    using M = select::by_magnitude<float>;
    REQUIRE(M::key(io::bf16_to_float(b)) == (h & 0x7FFFu) << 16);
    const bool nan16 = (h & 0x7FFFu) > 0x7C00u;
    REQUIRE(select::valid_key<M>(M::key(io::f16_to_float(b))) == !nan16);
    if (h & 0x7FFFu)
      REQUIRE((nan16 || M::key(io::f16_to_float(b)) > M::key(io::f16_to_float(static_cast<std::uint16_t>(b - 1)))));
  }
  CHECK(io::float_to_bf16(1.0f + 0x1p-8f) == 0x3F80);  // tie: to even
  CHECK(io::float_to_bf16(1.0f + 0x1.8p-8f) == 0x3F81);
  CHECK(io::float_to_bf16(1.0f + 0x3p-8f) == 0x3F82);  // tie: to even
  CHECK(io::parse_dtype("BF16") == dtype::bf16);
  CHECK(!io::parse_dtype("F4"));
  CHECK(io::dtype_size(dtype::i64) == 8);
}

TEST_CASE("safetensors: every dtype round-trips byte for byte, and tensors are views into the mapping") {
  scratch_dir dir;
  std::mt19937 rng(11);
  std::vector<stored> ts;
  for (const dtype d : {dtype::boolean, dtype::u8, dtype::i8, dtype::u16, dtype::i16, dtype::f16, dtype::bf16, dtype::u32,
                        dtype::i32, dtype::f32, dtype::u64, dtype::i64, dtype::f64, dtype::f8_e4m3, dtype::f8_e5m2})
    ts.push_back({{"t." + std::string(io::dtype_name(d)), d, {4, 2}}, random_tensor(d, 8, rng)});
  ts.push_back({{"empty", dtype::f32, {0, 4}}, {}});
  ts.push_back({{"scalar", dtype::f64, {}}, random_tensor(dtype::f64, 1, rng)});
  write_model(dir / "all.safetensors", ts, meta);
  const io::safetensors_file f(dir / "all.safetensors");
  CHECK(f.metadata() == meta);
  REQUIRE(f.tensors().size() == ts.size());
  for (const auto& t : ts) {
    const auto& e = f.at(t.spec.name);
    CHECK(e.dtype == t.spec.dtype);
    CHECK(e.shape == t.spec.shape);
    const auto b = f.bytes(e);
    CHECK(std::equal(b.begin(), b.end(), t.data.begin(), t.data.end()));
    CHECK((b.empty() || (b.data() >= f.mapping().bytes().data() &&
                         b.data() + b.size() <= f.mapping().bytes().data() + f.mapping().size())));
  }
  const auto v = f.view<float>(f.at("t.F32"));
  CHECK(v.size() == 8);
  CHECK(static_cast<const void*>(v.data()) == static_cast<const void*>(f.bytes(f.at("t.F32")).data()));
  std::vector<float> conv(8);
  f.read_values(f.at("t.BF16"), std::span<float>(conv));
  for (std::size_t i = 0; i < 8; ++i) {
    std::uint16_t raw;
    std::memcpy(&raw, ts[6].data.data() + 2 * i, 2);
    CHECK(io::float_to_bf16(conv[i]) == raw);
  }
  CHECK(contains(error_of([&] { (void)f.view<double>(f.at("t.F32")); }), "dtype F32"));
  CHECK(contains(error_of([&] { (void)f.at("nope"); }), "no tensor 'nope'"));
  CHECK(contains(error_of([&] { std::vector<float> x(8); f.read_values(f.at("t.I64"), std::span<float>(x)); }), "I64"));
}

TEST_CASE("safetensors: bad files are refused with the rule that failed") {
  auto file = [](const std::string& header, std::size_t data, std::optional<std::uint64_t> len = {}) {
    std::vector<std::byte> f(8 + header.size() + data, std::byte{0});
    const std::uint64_t n = len.value_or(header.size());
    for (int k = 0; k < 8; ++k) f[static_cast<std::size_t>(k)] = static_cast<std::byte>(n >> (8 * k));
    std::memcpy(f.data() + 8, header.data(), header.size());
    return f;
  };
  auto msg = [&](const std::vector<std::byte>& f) { return error_of([&] { (void)io::parse_safetensors(f, "x.safetensors"); }); };
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  CHECK(msg(file(ok, 8)) == "(no error)");
  CHECK(contains(msg(file(ok, 7)), "truncated"));
  CHECK(contains(msg(file(ok, 8, 1000)), "truncated"));
  CHECK(contains(msg(file(ok, 8, std::uint64_t{1} << 40)), "100 MiB"));
  CHECK(contains(msg(file("{\"a\":", 8)), "not valid JSON"));
  CHECK(contains(msg(file(R"({"a":{"dtype":"Q8","shape":[2],"data_offsets":[0,8]}})", 8)), "unknown dtype 'Q8'"));
  CHECK(contains(msg(file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)),
                 "overlap"));
  CHECK(contains(msg(file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8)), "end before they begin"));
  CHECK(contains(msg(file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8)), "12 bytes"));
  CHECK(contains(msg(file(R"({"__metadata__":{"k":["v"]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8)),
                 "not a string"));
  CHECK(contains(msg(file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}})", 8)),
                 "twice"));
  CHECK(contains(msg({}), "too short"));
  // The writer refuses bad names before creating any file.
  scratch_dir dir;
  const io::safetensors_spec dup[] = {{"x", dtype::f32, {1}}, {"x", dtype::f32, {1}}};
  CHECK(contains(error_of([&] { io::safetensors_writer w(dir / "o.safetensors", dup); }), "twice"));
  const io::safetensors_spec one[] = {{"x", dtype::f32, {2}}};
  CHECK(contains(error_of([&] {
                   io::safetensors_writer w(dir / "o.safetensors", one);
                   w.write(std::string_view("1234"));
                   w.commit();
                 }),
                 "promises 8"));
  CHECK(contains(error_of([&] { io::safetensors_writer w(dir / "missing" / "o.safetensors", one); }), "cannot write"));
  CHECK(fs::is_empty(dir.path));
}

TEST_CASE("npy: versions 1-3, both byte orders, C and Fortran order") {
  scratch_dir dir;
  std::mt19937 rng(5);
  for (const dtype d : {dtype::f16, dtype::f32, dtype::f64, dtype::i8, dtype::i16, dtype::i32, dtype::i64, dtype::u8,
                        dtype::u16, dtype::u32, dtype::u64, dtype::boolean})
    for (const bool big : {false, true})
      for (const bool fortran : {false, true}) {
        CAPTURE(std::string(io::dtype_name(d)));
        CAPTURE(big);
        CAPTURE(fortran);
        const std::vector<std::size_t> shape = {3, 4, 2};
        const auto data = random_tensor(d, 24, rng);
        const fs::path p = dir / "a.npy";
        io::write_npy(p, d, shape, data, fortran, big);
        const auto raw = slurp(p);
        CHECK((raw.size() - data.size()) % 64 == 0);
        const io::npy_file f(p);
        const auto& a = f.array();
        CHECK(a.dtype == d);
        CHECK(a.shape == shape);
        CHECK(a.fortran_order == fortran);
        CHECK(a.big_endian == (big && io::dtype_size(d) > 1));
        CHECK(std::equal(a.data.begin(), a.data.end(), data.begin(), data.end()));
        if (io::is_prunable(d)) {  // big-endian values read back as the little-endian ones
          std::vector<double> x(24), y(24);
          io::to_values(d, a.data.data(), 24, x.data(), a.swapped());
          std::vector<std::byte> swapped = data;
          const std::size_t es = io::dtype_size(d);
          for (std::size_t i = 0; i < 24; ++i) std::reverse(swapped.begin() + static_cast<std::ptrdiff_t>(i * es),
                                                            swapped.begin() + static_cast<std::ptrdiff_t>((i + 1) * es));
          io::to_values(d, (big ? swapped : data).data(), 24, y.data(), false);
          for (std::size_t i = 0; i < 24; ++i) CHECK(std::bit_cast<std::uint64_t>(x[i]) == std::bit_cast<std::uint64_t>(y[i]));
        }
      }
  // Versions 2 and 3: a 4-byte header length.
  const std::vector<std::byte> vals = random_tensor(dtype::f32, 6, rng);
  const std::string h1 = io::npy_header(dtype::f32, std::vector<std::size_t>{2, 3});
  for (const int v : {2, 3}) {
    std::string h = h1.substr(0, 8) + std::string(2, '\0') + h1.substr(8);
    h[6] = static_cast<char>(v);
    const std::size_t len = h1.size() - 10;
    h[8] = static_cast<char>(len & 0xFF), h[9] = static_cast<char>(len >> 8), h[10] = 0, h[11] = 0;
    std::vector<std::byte> f(h.size() + vals.size());
    std::memcpy(f.data(), h.data(), h.size());
    std::memcpy(f.data() + h.size(), vals.data(), vals.size());
    const auto a = io::parse_npy(f, "v.npy");
    CHECK(a.major_version == v);
    CHECK(a.shape == std::vector<std::size_t>{2, 3});
  }
  // A 1-D and a 0-D array.
  io::write_npy(dir / "b.npy", dtype::f32, std::vector<std::size_t>{6}, vals);
  CHECK(io::npy_file(dir / "b.npy").array().shape == std::vector<std::size_t>{6});
  io::write_npy(dir / "c.npy", dtype::f32, std::vector<std::size_t>{}, std::span<const std::byte>(vals).first(4));
  CHECK(io::npy_file(dir / "c.npy").array().shape.empty());
  // Bad files.
  auto raw = slurp(dir / "b.npy");
  auto msg = [](std::vector<std::byte> f) { return error_of([&] { (void)io::parse_npy(f, "x.npy"); }); };
  CHECK(contains(msg(std::vector<std::byte>(raw.begin(), raw.end() - 1)), "truncated"));
  auto more = raw;
  more.push_back(std::byte{0});
  CHECK(contains(msg(more), "trailing"));
  auto magic = raw;
  magic[1] = std::byte{'X'};
  CHECK(contains(msg(magic), "magic"));
  auto ver = raw;
  ver[6] = std::byte{9};
  CHECK(contains(msg(ver), "version 9"));
  auto descr = raw;
  const auto at = std::search(descr.begin(), descr.end(), "<f4", "<f4" + 3, [](std::byte a, char b) { return a == std::byte(b); });
  REQUIRE(at != descr.end());
  *(at + 1) = std::byte{'c'};
  CHECK(contains(msg(descr), "dtype '<c4'"));
  CHECK(contains(error_of([&] { io::write_npy(dir / "d.npy", dtype::bf16, std::vector<std::size_t>{1}, std::span<const std::byte>(vals).first(2)); }),
                 "no .npy descr"));
}

#ifdef SPRUCE_PRUNE_EXE
TEST_CASE("spruce-prune: per-tensor masks are the library's, for every granularity and both rules") {
  namespace gr = granularity;
  namespace cr = criterion;
  using selection::exact;
  using selection::threshold;
  for (const dtype d : {dtype::f32, dtype::bf16}) {
    per_tensor_case(gr::element{}, "element", cr::l1{}, "l1", threshold{}, "threshold", d);
    per_tensor_case(gr::element{}, "element", cr::l1{}, "l1", exact{}, "exact", d);
    per_tensor_case(gr::element{}, "element", cr::l2{}, "l2", exact{}, "exact", d);
    per_tensor_case(gr::vector{-1}, "row", cr::l2{}, "l2", threshold{}, "threshold", d);
    per_tensor_case(gr::vector{0}, "column", cr::l1{}, "l1", exact{}, "exact", d);
    per_tensor_case(gr::filter{}, "filter", cr::l2{}, "l2", exact{}, "exact", d);
    per_tensor_case(gr::filter{}, "filter", cr::l1{}, "l1", threshold{}, "threshold", d);
    per_tensor_case(gr::channel{}, "channel", cr::l2{}, "l2", threshold{}, "threshold", d);
    per_tensor_case(gr::block{2, 4}, "block:2x4", cr::l1{}, "l1", exact{}, "exact", d);
    per_tensor_case(gr::block{2, 4}, "block:2x4", cr::l2{}, "l2", threshold{}, "threshold", d);
    per_tensor_case(gr::n_m_pattern{2, 4, false}, "2:4", cr::l1{}, "l1", threshold{}, "threshold", d);
  }
  per_tensor_case(granularity::element{}, "element", criterion::l1{}, "l1", exact{}, "exact", dtype::f16);
  per_tensor_case(granularity::n_m_pattern{1, 4, false}, "1:4", criterion::l2{}, "l2", exact{}, "exact", dtype::f16);
  per_tensor_case(granularity::element{}, "element", criterion::l1{}, "l1", exact{}, "exact", dtype::f64);
}

TEST_CASE("spruce-prune: N:M over a tensor larger than one 4 MiB block of rows is the whole tensor's mask") {
  scratch_dir dir;
  std::mt19937 rng(4);
  const std::vector<stored> model = {{{"big.weight", dtype::bf16, {1100, 1024}}, random_tensor(dtype::bf16, 1100 * 1024, rng)},
                                     {{"conv.weight", dtype::f32, {600, 8, 3, 3}}, random_tensor(dtype::f32, 600 * 72, rng, true)}};
  write_model(dir / "in.safetensors", model, meta);
  REQUIRE(run_cli("prune '" + (dir / "in.safetensors").string() + "' -o '" + (dir / "out.safetensors").string() +
                      "' --include '*' --granularity 2:4 -q",
                  dir / "log") == 0);
  const io::safetensors_file out(dir / "out.safetensors");
  for (const auto& t : model) {
    const auto v = as_floats(t);
    check_applied(t, out, n_m_mask(tensor_ref<const float>(v.data(), std::span<const std::size_t>(t.spec.shape)),
                                   granularity::n_m_pattern{2, 4, false}));
  }
  // verify reads the pattern back (its nonzero mask is filled on every core); the dense
  // input fails it, and so does a tensor whose first half follows 2:4 and second does not
  // (a chunk of the nonzero mask read from the wrong place would pass it).
  CHECK(run_cli("verify '" + (dir / "out.safetensors").string() + "' --include '*' --pattern 2:4", dir / "log") == 0);
  CHECK(run_cli("verify '" + (dir / "in.safetensors").string() + "' --include '*' --pattern 2:4", dir / "log") != 0);
  stored half = model[0];
  const auto pruned = out.bytes(out.at("big.weight"));
  std::copy(pruned.begin(), pruned.begin() + static_cast<std::ptrdiff_t>(pruned.size() / 2), half.data.begin());
  write_model(dir / "half.safetensors", {half}, meta);
  CHECK(run_cli("verify '" + (dir / "half.safetensors").string() + "' --include '*' --pattern 2:4", dir / "log") != 0);
}

TEST_CASE("spruce-prune: a checkpoint of 64 MiB or more (O_DIRECT, filled in place) is the library's masks, unaligned tensors included") {
  // An output this large goes through atomic_writer's direct mode, where a pruned tensor is
  // written straight into the staging blocks (17 of them here) when its offset is aligned
  // for its dtype, and copied through a buffer when it is not (after the odd-length BOOL
  // and U8 tensors: a.weight at offset 3, c.weight at 4 mod 8).
  scratch_dir dir;
  std::mt19937 rng(11);
  const std::vector<stored> model = {{{"flags", dtype::boolean, {3}}, {std::byte{0}, std::byte{1}, std::byte{1}}},
                                     {{"a.weight", dtype::bf16, {513, 1000}}, random_tensor(dtype::bf16, 513 * 1000, rng)},
                                     {{"pad", dtype::u8, {1}}, random_tensor(dtype::u8, 1, rng)},
                                     {{"b.weight", dtype::f32, {4200, 4100}}, random_tensor(dtype::f32, 4200 * 4100, rng, true)},
                                     {{"c.weight", dtype::f64, {7, 13}}, random_tensor(dtype::f64, 7 * 13, rng)}};
  write_model(dir / "in.safetensors", model, meta);
  REQUIRE(fs::file_size(dir / "in.safetensors") >= io::atomic_writer::direct_min_bytes);
  REQUIRE(run_cli("prune '" + (dir / "in.safetensors").string() + "' -o '" + (dir / "out.safetensors").string() +
                      "' --include '*.weight' --sparsity 0.5 --rule exact -q",
                  dir / "log") == 0);
  const io::safetensors_file out(dir / "out.safetensors");
  for (const auto& t : model) {
    CAPTURE(t.spec.name);
    if (t.spec.name.ends_with(".weight")) {
      check_applied(t, out, reference_mask(granularity::element{}, criterion::l1{}, selection::exact{}, t, 0.5));
    } else {
      const auto b = out.bytes(out.at(t.spec.name));
      CHECK(std::equal(b.begin(), b.end(), t.data.begin(), t.data.end()));
    }
  }
}

TEST_CASE("spruce-prune: element pruning of large BF16 / F16 tensors (read in place) is the library's float mask") {
  // Past the selection's bracket threshold and the 4 MiB write chunk, with heavy ties (the
  // exact rule's tie cut lands inside a chunk), +-0, infinities and subnormals.
  scratch_dir dir;
  std::mt19937 rng(8);
  auto adversarial = [&](dtype d, std::size_t n) {
    auto b = random_tensor(d, n, rng, true);
    // +-0, +-inf, the smallest subnormals, the largest subnormal and the smallest normal.
    const std::uint16_t bf[] = {0x8000, 0x0000, 0x7F80, 0xFF80, 0x0001, 0x8001, 0x007F, 0x0080};
    const std::uint16_t hf[] = {0x8000, 0x0000, 0x7C00, 0xFC00, 0x0001, 0x8001, 0x03FF, 0x0400};
    const std::uint16_t* special = d == dtype::bf16 ? bf : hf;
    for (std::size_t i = 0; i < n; i += 97) {
      const std::uint16_t v = special[(i / 97) % 8];
      std::memcpy(b.data() + 2 * i, &v, 2);
    }
    return b;
  };
  const std::vector<stored> model = {{{"a.weight", dtype::bf16, {2100, 1024}}, adversarial(dtype::bf16, 2100 * 1024)},
                                     {{"b.weight", dtype::f16, {300, 300}}, adversarial(dtype::f16, 300 * 300)}};
  write_model(dir / "in.safetensors", model, meta);
  for (const std::string rule : {"threshold", "exact"})
    for (const std::string crit : {"l1", "l2"}) {
      CAPTURE(rule);
      CAPTURE(crit);
      REQUIRE(run_cli("prune '" + (dir / "in.safetensors").string() + "' -o '" + (dir / "out.safetensors").string() +
                          "' --include '*' --sparsity 0.45 -q --rule " + rule + " --criterion " + crit,
                      dir / "log") == 0);
      const io::safetensors_file out(dir / "out.safetensors");
      for (const auto& t : model) {
        const mask m = rule == "exact" ? (crit == "l1" ? reference_mask(granularity::element{}, criterion::l1{}, selection::exact{}, t, 0.45)
                                                       : reference_mask(granularity::element{}, criterion::l2{}, selection::exact{}, t, 0.45))
                                       : (crit == "l1" ? reference_mask(granularity::element{}, criterion::l1{}, selection::threshold{}, t, 0.45)
                                                       : reference_mask(granularity::element{}, criterion::l2{}, selection::threshold{}, t, 0.45));
        check_applied(t, out, m);
      }
    }
}

TEST_CASE("spruce-prune: .npy input in both byte orders and memory orders, F16 / F32 / F64, and bad .npy files") {
  namespace gr = granularity;
  namespace cr = criterion;
  using selection::exact;
  using selection::threshold;
  scratch_dir dir;
  std::mt19937 rng(21);
  const std::vector<std::size_t> shape = {8, 4, 3, 3};
  // The layout functions against a naive index: a Fortran [2, 3] array stores (i, j) at j * 2 + i.
  {
    std::vector<std::byte> c(6 * 4);
    for (std::size_t i = 0; i < 6; ++i) {
      const float v = static_cast<float>(i);
      std::memcpy(c.data() + 4 * i, &v, 4);
    }
    const auto f = io::from_native_c_order(c, dtype::f32, std::vector<std::size_t>{2, 3}, true, true);
    for (std::size_t i = 0; i < 2; ++i)
      for (std::size_t j = 0; j < 3; ++j) {
        std::uint32_t u;
        std::memcpy(&u, f.data() + 4 * (j * 2 + i), 4);
        CHECK(std::bit_cast<float>(io::detail::byte_swap(u)) == static_cast<float>(i * 3 + j));
      }
    io::write_npy(dir / "t.npy", dtype::f32, std::vector<std::size_t>{2, 3}, f, true, true);
    const auto back = io::to_native_c_order(io::npy_file(dir / "t.npy").array());
    CHECK(std::equal(back.begin(), back.end(), c.begin(), c.end()));
  }
  struct config {
    std::string flags;
    std::function<mask(const stored&)> ref;
  };
  const std::vector<config> configs = {
      {"--granularity element --criterion l1 --rule threshold --sparsity 0.5",
       [](const stored& t) { return reference_mask(gr::element{}, cr::l1{}, threshold{}, t, 0.5); }},
      {"--granularity element --criterion l1 --rule exact --sparsity 0.5",
       [](const stored& t) { return reference_mask(gr::element{}, cr::l1{}, exact{}, t, 0.5); }},
      {"--granularity element --criterion l2 --rule exact --sparsity 0.5",
       [](const stored& t) { return reference_mask(gr::element{}, cr::l2{}, exact{}, t, 0.5); }},
      {"--granularity filter --criterion l2 --rule exact --sparsity 0.5",
       [](const stored& t) { return reference_mask(gr::filter{}, cr::l2{}, exact{}, t, 0.5); }},
      {"--granularity row --criterion l1 --rule threshold --sparsity 0.5",
       [](const stored& t) { return reference_mask(gr::vector{-1}, cr::l1{}, threshold{}, t, 0.5); }},
      {"--granularity block:2x4 --criterion l1 --rule exact --sparsity 0.5",
       [](const stored& t) { return reference_mask(gr::block{2, 4}, cr::l1{}, exact{}, t, 0.5); }},
      {"--granularity 2:4", [](const stored& t) { return reference_mask(gr::n_m_pattern{2, 4, false}, cr::l1{}, threshold{}, t, 0.5); }},
  };
  for (const dtype d : {dtype::f16, dtype::f32, dtype::f64})
    for (const bool big : {false, true})
      for (const bool fortran : {false, true}) {
        CAPTURE(std::string(io::dtype_name(d)));
        CAPTURE(big);
        CAPTURE(fortran);
        const stored t{{"conv1", d, shape}, random_tensor(d, 8 * 36, rng, rng() % 2 == 0)};  // C order, native
        io::write_npy(dir / "conv1.npy", d, shape, io::from_native_c_order(t.data, d, shape, fortran, big), fortran, big);
        for (const auto& cf : configs) {
          CAPTURE(cf.flags);
          REQUIRE(run_cli("prune '" + (dir / "conv1.npy").string() + "' -o '" + (dir / "out.npy").string() + "' -q " + cf.flags,
                          dir / "log") == 0);
          const io::npy_file out(dir / "out.npy");
          const auto& a = out.array();
          CHECK(a.dtype == d);
          CHECK(a.shape == shape);
          CHECK(a.fortran_order == fortran);
          CHECK(a.big_endian == big);
          check_applied(t, io::to_native_c_order(a), cf.ref(t));
        }
      }
  // Wanda on a .npy weight (the last one written: F64, big-endian, Fortran order): the
  // activations file holds the norms under the stem, as for a safetensors tensor.
  {
    const auto raw = slurp(dir / "conv1.npy");
    const io::npy_array in = io::parse_npy(raw, "conv1.npy");
    const stored t{{"conv1", in.dtype, in.shape}, io::to_native_c_order(in)};
    std::vector<double> norms = {0.5, 2.0, 1.0, 3.0};
    std::vector<std::byte> nb(norms.size() * 8);
    std::memcpy(nb.data(), norms.data(), nb.size());
    write_model(dir / "acts.safetensors", {{{"conv1", dtype::f64, {4}}, nb}}, {});
    REQUIRE(run_cli("prune '" + (dir / "conv1.npy").string() + "' -o '" + (dir / "out.npy").string() +
                        "' -q --criterion wanda --activations '" + (dir / "acts.safetensors").string() + "' --sparsity 0.5 --rule exact",
                    dir / "log") == 0);
    std::vector<double> w(t.data.size() / 8);
    std::memcpy(w.data(), t.data.data(), t.data.size());
    criterion::inputs<double, criterion::activation_norms<double>> x{tensor_ref<const double>(w.data(), std::span<const std::size_t>(shape))};
    x.extra.norms = norms;
    check_applied(t, io::to_native_c_order(io::npy_file(dir / "out.npy").array()),
                  per_row_mask(criterion::wanda{}, exact(0.5), x, "conv1"));
  }
  // Several .npy files: one global cut (as global_masks over the same tensors), written
  // into a directory under their own names; a non-floating array is copied.
  {
    std::vector<stored> ts = {{{"a", dtype::f32, {16, 8}}, random_tensor(dtype::f32, 128, rng)},
                              {{"b", dtype::f16, {8, 8}}, random_tensor(dtype::f16, 64, rng, true)},
                              {{"c", dtype::f32, {40}}, random_tensor(dtype::f32, 40, rng)}};
    std::string args;
    for (std::size_t k = 0; k < ts.size(); ++k) {
      const bool big = k == 1, fortran = k == 0;
      io::write_npy(dir / (ts[k].spec.name + ".npy"), ts[k].spec.dtype, ts[k].spec.shape,
                    io::from_native_c_order(ts[k].data, ts[k].spec.dtype, ts[k].spec.shape, fortran, big), fortran, big);
      args += " '" + (dir / (ts[k].spec.name + ".npy")).string() + "'";
    }
    const std::vector<std::byte> ids = random_tensor(dtype::i64, 4, rng);
    io::write_npy(dir / "ids.npy", dtype::i64, std::vector<std::size_t>{4}, ids);
    fs::create_directories(dir / "out");
    REQUIRE(run_cli("prune" + args + " '" + (dir / "ids.npy").string() + "' -o '" + (dir / "out").string() +
                        "' -q --scope global --rule exact --sparsity 0.6 --max-sparsity 0.8",
                    dir / "log") == 0);
    std::vector<std::vector<float>> vals;
    std::vector<named_tensor<float>> params;
    for (const auto& t : ts) vals.push_back(as_floats(t));
    for (std::size_t k = 0; k < ts.size(); ++k)
      params.push_back({ts[k].spec.name, tensor_ref<float>(vals[k].data(), std::span<const std::size_t>(ts[k].spec.shape))});
    const auto masks = global_masks(pruner<gr::element, cr::l1, exact>{{}, {}, exact(0.6)}, params, sparsity_limits{0.0, 0.8, 0});
    for (std::size_t k = 0; k < ts.size(); ++k)
      check_applied(ts[k], io::to_native_c_order(io::npy_file(dir / "out" / (ts[k].spec.name + ".npy")).array()), masks[k]);
    const io::npy_file ids_out(dir / "out" / "ids.npy");
    const auto copied = ids_out.array().data;
    CHECK(std::equal(copied.begin(), copied.end(), ids.begin(), ids.end()));
    // verify and inspect read .npy too (names are the stems)
    CHECK(run_cli("verify '" + (dir / "out" / "a.npy").string() + "' '" + (dir / "out" / "b.npy").string() +
                      "' --sparsity 0.5 --scope global",
                  dir / "log") == 0);
    CHECK(run_cli("verify '" + (dir / "a.npy").string() + "' --sparsity 0.5", dir / "log") == 1);
    REQUIRE(run_cli("inspect '" + (dir / "out" / "b.npy").string() + "'", dir / "log") == 0);
    std::ifstream lf(dir / "log");
    const std::string log((std::istreambuf_iterator<char>(lf)), std::istreambuf_iterator<char>());
    CHECK(contains(log, "b  "));
    CHECK(contains(log, "F16"));
    // Two inputs need a directory; a stem named twice is refused.
    CHECK(run_cli("prune" + args + " -o '" + (dir / "x.npy").string() + "' --sparsity 0.5", dir / "log") == 3);
    CHECK(run_cli("prune" + args + " '" + (dir / "out" / "a.npy").string() + "' -o '" + (dir / "out").string() +
                      "' --sparsity 0.5", dir / "log") == 3);
  }
  // Bad .npy files: a clear message, exit 3, nothing written, an existing output untouched.
  {
    const std::vector<std::byte> vals = random_tensor(dtype::f32, 12, rng);
    io::write_npy(dir / "good.npy", dtype::f32, std::vector<std::size_t>{3, 4}, vals);
    auto raw = slurp(dir / "good.npy");
    auto put = [&](const std::string& name, const std::vector<std::byte>& b) {
      std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    };
    put("trunc.npy", std::vector<std::byte>(raw.begin(), raw.end() - 5));
    auto magic = raw;
    magic[2] = std::byte{'X'};
    put("magic.npy", magic);
    auto header = raw;
    const auto at = std::search(header.begin(), header.end(), "'shape'", "'shape'" + 7, [](std::byte a, char b) { return a == std::byte(b); });
    REQUIRE(at != header.end());
    *(at + 1) = std::byte{'S'};
    put("header.npy", header);
    const std::pair<std::string, std::string> bad[] = {
        {"trunc.npy", "truncated"}, {"magic.npy", "magic"}, {"header.npy", "unexpected or repeated key 'Shape'"}};
    std::ofstream(dir / "keep.npy") << "old";
    for (const auto& [name, what] : bad) {
      CAPTURE(name);
      for (const std::string out : {"new.npy", "keep.npy"}) {
        CHECK(run_cli("prune '" + (dir / name).string() + "' -o '" + (dir / out).string() + "' --sparsity 0.5", dir / "log") == 3);
        std::ifstream lf(dir / "log");
        const std::string log((std::istreambuf_iterator<char>(lf)), std::istreambuf_iterator<char>());
        CHECK(contains(log, name));
        CHECK(contains(log, what));
      }
      CHECK(!fs::exists(dir / "new.npy"));
      std::ifstream kf(dir / "keep.npy");
      const std::string kept((std::istreambuf_iterator<char>(kf)), std::istreambuf_iterator<char>());
      CHECK(kept == "old");
      CHECK(run_cli("inspect '" + (dir / name).string() + "'", dir / "log") == 3);
    }
    CHECK(run_cli("prune '" + (dir / "good.npy").string() + "' -o '" + (dir / "good.safetensors").string() + "' --sparsity 0.5",
                  dir / "log") == 3);
    for (const auto& e : fs::directory_iterator(dir.path))
      CHECK_MESSAGE(e.path().string().find(".tmp.") == std::string::npos, e.path());
  }
}

TEST_CASE("spruce-prune: Wanda, tables, global scope with limits, sharded input, the default selection") {
  scratch_dir dir;
  const auto model = transformer(dtype::f32, 9);
  const fs::path in = dir / "in.safetensors", out = dir / "out.safetensors";
  write_model(in, model, meta);
  std::vector<named_tensor<float>> params;
  std::vector<std::vector<float>> values;
  for (const auto& t : model)
    if (selected(t)) values.push_back(as_floats(t));
  {
    std::size_t k = 0;
    for (const auto& t : model)
      if (selected(t)) params.push_back({t.spec.name, tensor_ref<float>(values[k].data(), std::span<const std::size_t>(t.spec.shape))}), ++k;
  }
  const std::string sel = " --include '*proj.weight' --include '*conv.weight' -q";

  SUBCASE("wanda: per output row (element) and within N:M groups") {
    std::mt19937 rng(2);
    std::vector<stored> acts;
    std::map<std::string, std::vector<float>> norms;
    for (const auto& t : model)
      if (selected(t)) {
        std::vector<float> v(t.spec.shape[1]);
        for (auto& x : v) x = std::uniform_real_distribution<float>(0.1f, 3.0f)(rng);
        norms[t.spec.name] = v;
        std::vector<std::byte> b(v.size() * 4);
        std::memcpy(b.data(), v.data(), b.size());
        acts.push_back({{t.spec.name, dtype::f32, {v.size()}}, b});
      }
    write_model(dir / "acts.safetensors", acts, {});
    for (const std::string g : {"element", "2:4"}) {
      CAPTURE(g);
      REQUIRE(run_cli("prune '" + in.string() + "' -o '" + out.string() + "' --criterion wanda --activations '" +
                          (dir / "acts.safetensors").string() + "' --granularity " + g + " --rule exact" +
                          (g == "element" ? " --sparsity 0.5" : "") + sel,
                      dir / "log") == 0);
      const io::safetensors_file f(out);
      std::size_t k = 0;
      for (const auto& t : model) {
        if (!selected(t)) continue;
        criterion::inputs<float, criterion::activation_norms<float>> x{tensor_ref<const float>(params[k].view)};
        x.extra.norms = norms[t.spec.name];
        const mask m = g == "element"
                           ? per_row_mask(criterion::wanda{}, selection::exact(0.5), x, t.spec.name)
                           : n_m_mask(tensor_ref<const float>(spruce::scores(granularity::element{}, criterion::wanda{}, x).data(),
                                                              params[k].view.shape()),
                                      granularity::n_m_pattern{2, 4, false});
        check_applied(t, f, m);
        ++k;
      }
    }
  }
  SUBCASE("a table of ratios and counts") {
    std::ofstream(dir / "table.txt") << "# per-tensor amounts\nlayers.0.* 0.25\nlayers.1.mlp.*,100\n";
    REQUIRE(run_cli("prune '" + in.string() + "' -o '" + out.string() + "' --rule exact --table '" +
                        (dir / "table.txt").string() + "' --include '*proj.weight' -q",
                    dir / "log") == 0);
    const io::safetensors_file f(out);
    for (const auto& t : model) {
      const std::string& n = t.spec.name;
      const auto v = io::is_prunable(t.spec.dtype) ? as_floats(t) : std::vector<float>{};
      auto w = [&] { return tensor_ref<const float>(v.data(), std::span<const std::size_t>(t.spec.shape)); };
      if (n.rfind("layers.0.", 0) == 0 && n.find("proj.weight") != std::string::npos)
        check_applied(t, f, magnitude_mask(w(), selection::exact(0.25), n));
      else if (n.rfind("layers.1.mlp.", 0) == 0)
        check_applied(t, f, magnitude_mask(w(), selection::exact(std::size_t{100}), n));
      else {
        const auto b = f.bytes(f.at(n));
        CHECK(std::equal(b.begin(), b.end(), t.data.begin(), t.data.end()));
      }
    }
  }
  SUBCASE("global scope matches global_masks, with and without limits") {
    struct gcase {
      std::string flags;
      std::function<std::vector<mask>()> ref;
    };
    const sparsity_limits lim{0.2, 0.7, 0};
    const std::vector<gcase> cases = {
        {"--granularity element --criterion l1 --rule exact",
         [&] { return global_masks(pruner<granularity::element, criterion::l1, selection::exact>{{}, {}, selection::exact(0.6)}, params); }},
        {"--granularity element --criterion l1 --rule threshold --min-sparsity 0.2 --max-sparsity 0.7",
         [&] { return global_masks(pruner<granularity::element, criterion::l1, selection::threshold>{{}, {}, {0.6}}, params, lim); }},
        {"--granularity element --criterion l2 --rule exact --max-sparsity 0.7 --min-sparsity 0.2",
         [&] { return global_masks(pruner<granularity::element, criterion::l2, selection::exact>{{}, {}, selection::exact(0.6)}, params, lim); }},
        {"--granularity filter --criterion l2 --rule exact --max-sparsity 0.7 --min-sparsity 0.2",
         [&] { return global_masks(pruner<granularity::filter, criterion::l2, selection::exact>{{}, {}, selection::exact(0.6)}, params, lim); }},
        {"--granularity block:2x4 --criterion l1 --rule threshold",
         [&] { return global_masks(pruner<granularity::block, criterion::l1, selection::threshold>{{2, 4}, {}, {0.6}}, params); }},
    };
    for (const auto& gc : cases) {
      CAPTURE(gc.flags);
      REQUIRE(run_cli("prune '" + in.string() + "' -o '" + out.string() + "' --scope global --sparsity 0.6 " + gc.flags + sel,
                      dir / "log") == 0);
      const io::safetensors_file f(out);
      const auto masks = gc.ref();
      std::size_t k = 0;
      for (const auto& t : model)
        if (selected(t)) check_applied(t, f, masks[k++]);
      check_untouched(model, f);
    }
  }
  SUBCASE("sharded: global scope across shards, new shards and a new index") {
    fs::create_directories(dir / "sh");
    const std::vector<stored> a(model.begin(), model.begin() + 6), b(model.begin() + 6, model.end());
    write_model(dir / "sh" / "model-1.safetensors", a, meta);
    write_model(dir / "sh" / "model-2.safetensors", b, meta);
    nlohmann::json idx;
    idx["metadata"]["total_size"] = 123;
    for (const auto& t : a) idx["weight_map"][t.spec.name] = "model-1.safetensors";
    for (const auto& t : b) idx["weight_map"][t.spec.name] = "model-2.safetensors";
    std::ofstream(dir / "sh" / "model.safetensors.index.json") << idx.dump();
    fs::create_directories(dir / "out");
    REQUIRE(run_cli("prune '" + (dir / "sh" / "model.safetensors.index.json").string() + "' -o '" + (dir / "out").string() +
                        "' --scope global --sparsity 0.6 --rule exact" + sel,
                    dir / "log") == 0);
    const auto masks =
        global_masks(pruner<granularity::element, criterion::l1, selection::exact>{{}, {}, selection::exact(0.6)}, params);
    const io::safetensors_file f1(dir / "out" / "model-1.safetensors"), f2(dir / "out" / "model-2.safetensors");
    std::size_t k = 0;
    for (std::size_t i = 0; i < model.size(); ++i) {
      const auto& f = i < 6 ? f1 : f2;
      if (selected(model[i])) check_applied(model[i], f, masks[k++]);
      else {
        const auto bytes = f.bytes(f.at(model[i].spec.name));
        CHECK(std::equal(bytes.begin(), bytes.end(), model[i].data.begin(), model[i].data.end()));
      }
    }
    std::ifstream ii(dir / "out" / "model.safetensors.index.json");
    const auto back = nlohmann::json::parse(ii);
    CHECK(back["weight_map"] == idx["weight_map"]);
    CHECK(back["metadata"] == idx["metadata"]);
  }
  SUBCASE("the default selection skips embeddings and norms and says so") {
    REQUIRE(run_cli("prune '" + in.string() + "' -o '" + out.string() + "' --sparsity 0.5", dir / "log") == 0);
    std::ifstream lf(dir / "log");
    const std::string log((std::istreambuf_iterator<char>(lf)), std::istreambuf_iterator<char>());
    CHECK(contains(log, "skipped: embedding"));
    CHECK(contains(log, "skipped: norm"));
    const io::safetensors_file f(out);
    for (const auto& t : model) {
      const auto v = io::is_prunable(t.spec.dtype) ? as_floats(t) : std::vector<float>{};
      if (selected(t))
        check_applied(t, f, magnitude_mask(tensor_ref<const float>(v.data(), std::span<const std::size_t>(t.spec.shape)),
                                           selection::threshold{0.5}, t.spec.name));
      else {
        const auto bytes = f.bytes(f.at(t.spec.name));
        CHECK(std::equal(bytes.begin(), bytes.end(), t.data.begin(), t.data.end()));
      }
    }
  }
}
#endif
