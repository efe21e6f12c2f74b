// spruce-prune: prunes real checkpoints (safetensors, sharded through
// model.safetensors.index.json) from the command line with any of spruce's policies. The
// program adds no semantics of its own: every mask comes from the library's API on the
// tensor itself (F16 / BF16 scores are computed in float, F64 in double; kept values and
// every other tensor are copied byte for byte). Input is memory-mapped and streamed
// tensor by tensor to the output, which is written to a temporary name, fsynced and
// renamed; a failure leaves nothing behind. See `spruce-prune --help`.

#include <fnmatch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "spruce/spruce.hpp"
#include "spruce/io/atomic_file.hpp"
#include "spruce/io/atomic_writer.hpp"
#include "spruce/io/csv.hpp"
#include "spruce/io/dtype.hpp"
#include "spruce/io/npy.hpp"
#include "spruce/io/safetensors.hpp"
#include "spruce/select/cut.hpp"

namespace fs = std::filesystem;
using spruce::error;
using spruce::io::dtype;
using spruce::io::safetensors_entry;
using spruce::io::safetensors_file;

namespace {

constexpr int exit_ok = 0, exit_verify_failed = 1, exit_usage = 2, exit_error = 3;

const char* const help_text = R"(spruce-prune: prune safetensors checkpoints and .npy arrays with spruce's policies

usage:
  spruce-prune prune IN -o OUT [options]     prune IN (a .safetensors file, a sharded
                                             checkpoint's model.safetensors.index.json, or one
                                             or more .npy files) to OUT
  spruce-prune inspect FILE [--pattern N:M]  per tensor: name, dtype, shape, bytes, sparsity,
                                             the N:M pattern it fits along its input axis; totals
  spruce-prune verify FILE (--pattern N:M | --sparsity S) [--include/--exclude ...] [--scope global]
                                             exit 0 when every selected tensor fits the pattern
                                             (or holds at least round(S * elements) zeros; with
                                             --scope global, the selected tensors together), 1
                                             otherwise, listing the offending tensors
  spruce-prune --help | --version

which tensors (prune and verify):
  --include GLOB     prune tensors whose name matches GLOB (fnmatch: *, ?, [..]); repeatable
  --exclude GLOB     never prune tensors whose name matches GLOB; repeatable
                     default (no --include): floating tensors (F16, BF16, F32, F64) named
                     *weight of rank >= 2, except embeddings (*embed*, *wte*, *wpe*) and norms
                     (*norm*, *ln_*), which the report lists as skipped. Every tensor not
                     pruned is copied byte for byte, metadata too.

how (prune):
  --granularity G    element (default) | row (vectors along the last axis) | column (vectors
                     along axis 0) | filter (axis-0 slices) | channel (axis-1 slices) |
                     block:RxC (R x C tiles of [out, in*kh*kw]) | N:M (e.g. 2:4: N of every M
                     consecutive weights along the input axis kept; the axis length must be a
                     multiple of M)
  --criterion C      l1 (default, |w|) | l2 (w^2; groups: Frobenius norm) | wanda (|w| * the
                     L2 norm of the input channel's activations, compared within each output
                     row under element granularity; needs --activations)
  --activations F    a safetensors file holding, for each pruned tensor, a tensor of the same
                     name with one norm per input channel (axis 1), any floating dtype
  --rule R           threshold (default: every score <= the count-th smallest is pruned; ties
                     can prune more) | exact (exactly count, ties by lower index)
  --sparsity S       ratio of groups to prune, in [0, 1] (ignored for N:M, which fixes 1 - N/M;
                     if given it must equal it)
  --table FILE       per-tensor amounts instead of --sparsity: lines "GLOB VALUE" (or
                     "GLOB,VALUE"; # comments); VALUE with a '.' or an exponent is a ratio, a
                     whole number a count of groups. Entries apply within the selection above;
                     every entry must match a selected tensor, and no tensor may match two
                     entries. Selected tensors no entry matches are not pruned.
  --scope S          tensor (default: each tensor alone) | global (one selection over the
                     scores of every selected tensor, as if concatenated, across shards too)
  --min-sparsity X   global scope: every tensor gives up at least this fraction
  --max-sparsity X   global scope: no tensor loses more than this fraction (below 1 keeps at
                     least one group)
  --dry-run          compute the masks and print the report; write nothing
  --report CSV       also write the report as CSV
  -o OUT             output file; for an index input, the output index file (its shards are
                     written beside it under the input's shard names). An existing OUT is
                     replaced only when the whole run succeeded.
  -q, --quiet        no report table on stdout

.npy input (prune, inspect, verify): each file is one tensor named after the file's stem
  (w.npy is "w", for --include / --exclude / --table and the report); every floating array
  (F16, F32, F64) of rank >= 1 is selected by default, other dtypes are copied. The output
  keeps the input's dtype, shape, byte order and memory order (C or Fortran). One input:
  -o OUT.npy, or an existing directory. Several inputs: -o an existing directory, where each
  is written under its own file name; --scope global cuts across all of them. Wanda's
  --activations is a safetensors file with a norm vector per stem. A Fortran-order or
  big-endian array is held in memory in C order, native byte order (its size again); a
  C-order little-endian one is read in place. BF16 has no .npy dtype (numpy has none).

exit codes: 0 success, 1 verify found offending tensors, 2 bad command line, 3 bad input or
failure (the message says what, where and how to fix it; nothing is written).

numbers: scores of F16 and BF16 tensors are computed in float and of F64 in double;
masks are exactly those of the library's API (spruce::pruner, per_row_mask, n_m_mask and the
global selection) on the same values. A progress line goes to stderr for inputs over 100 MB.
)";

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

double parse_real(std::string_view flag, const std::string& text) {
  try {
    std::size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size() && std::isfinite(v)) return v;
  } catch (const std::exception&) {
  }
  throw usage_error(std::string(flag) + " needs a finite number, not '" + text + "'");
}

std::size_t parse_whole(std::string_view flag, const std::string& text) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos)
    throw usage_error(std::string(flag) + " needs a whole number >= 0, not '" + text + "'");
  try {
    return static_cast<std::size_t>(std::stoull(text));
  } catch (const std::exception&) {
    throw usage_error(std::string(flag) + " '" + text + "' is too large");
  }
}

bool is_npy_path(const std::string& p) { return fs::path(p).extension() == ".npy"; }

bool glob_match(const std::string& glob, const std::string& name) {
  return ::fnmatch(glob.c_str(), name.c_str(), 0) == 0;
}

// ---- options -----------------------------------------------------------------------

enum class gran_kind { element, row, column, filter, channel, block, n_m };
enum class crit_kind { l1, l2, wanda };
enum class rule_kind { threshold, exact };

struct gran_opt {
  gran_kind kind = gran_kind::element;
  std::size_t a = 0, b = 0;  // block rows x cols, or n:m
  std::string text = "element";
};

gran_opt parse_granularity(const std::string& s) {
  gran_opt g;
  g.text = s;
  auto pair = [&](std::string_view body, char sep, std::string_view what) {
    const auto at = body.find(sep);
    if (at == std::string_view::npos) throw usage_error("--granularity " + s + ": expected " + std::string(what));
    g.a = parse_whole("--granularity", std::string(body.substr(0, at)));
    g.b = parse_whole("--granularity", std::string(body.substr(at + 1)));
  };
  if (s == "element") g.kind = gran_kind::element;
  else if (s == "row") g.kind = gran_kind::row;
  else if (s == "column") g.kind = gran_kind::column;
  else if (s == "filter") g.kind = gran_kind::filter;
  else if (s == "channel") g.kind = gran_kind::channel;
  else if (s.rfind("block:", 0) == 0) {
    g.kind = gran_kind::block;
    pair(std::string_view(s).substr(6), 'x', "block:RxC, e.g. block:4x4");
    if (g.a == 0 || g.b == 0) throw usage_error("--granularity " + s + ": a block needs R, C >= 1");
  } else if (s.find(':') != std::string::npos) {
    g.kind = gran_kind::n_m;
    pair(s, ':', "N:M, e.g. 2:4");
    if (g.b == 0 || g.a >= g.b)
      throw usage_error("--granularity " + s + " does not form: N:M keeps N of every M consecutive weights, so it "
                        "needs 0 <= N < M; pass e.g. 2:4");
  } else {
    throw usage_error("--granularity '" + s + "' is not one of element, row, column, filter, channel, block:RxC, N:M");
  }
  return g;
}

struct options {
  std::string command, input, output, report_csv, activations, table;  // input: the inputs, for messages
  std::vector<std::string> inputs;
  std::vector<std::string> include, exclude;
  gran_opt gran;
  crit_kind crit = crit_kind::l1;
  rule_kind rule = rule_kind::threshold;
  std::optional<double> sparsity;
  bool global = false, dry_run = false, quiet = false;
  std::optional<double> min_sparsity, max_sparsity;
  std::optional<gran_opt> pattern;  // verify / inspect
};

options parse_args(int argc, char** argv) {
  options o;
  std::vector<std::string> pos;
  auto need = [&](int& i, const std::string& flag) -> std::string {
    if (i + 1 >= argc) throw usage_error(flag + " needs a value");
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") o.command = "help";
    else if (a == "--version") o.command = "version";
    else if (a == "-o" || a == "--output") o.output = need(i, a);
    else if (a == "--include") o.include.push_back(need(i, a));
    else if (a == "--exclude") o.exclude.push_back(need(i, a));
    else if (a == "--granularity") o.gran = parse_granularity(need(i, a));
    else if (a == "--criterion") {
      const std::string v = need(i, a);
      if (v == "l1") o.crit = crit_kind::l1;
      else if (v == "l2") o.crit = crit_kind::l2;
      else if (v == "wanda") o.crit = crit_kind::wanda;
      else throw usage_error("--criterion '" + v + "' is not one of l1, l2, wanda");
    } else if (a == "--activations") o.activations = need(i, a);
    else if (a == "--rule") {
      const std::string v = need(i, a);
      if (v == "threshold") o.rule = rule_kind::threshold;
      else if (v == "exact") o.rule = rule_kind::exact;
      else throw usage_error("--rule '" + v + "' is not threshold or exact");
    } else if (a == "--sparsity") {
      o.sparsity = parse_real(a, need(i, a));
      if (*o.sparsity < 0 || *o.sparsity > 1) throw usage_error("--sparsity must be in [0, 1]");
    } else if (a == "--table") o.table = need(i, a);
    else if (a == "--scope") {
      const std::string v = need(i, a);
      if (v == "tensor") o.global = false;
      else if (v == "global") o.global = true;
      else throw usage_error("--scope '" + v + "' is not tensor or global");
    } else if (a == "--min-sparsity") o.min_sparsity = parse_real(a, need(i, a));
    else if (a == "--max-sparsity") o.max_sparsity = parse_real(a, need(i, a));
    else if (a == "--dry-run") o.dry_run = true;
    else if (a == "--report") o.report_csv = need(i, a);
    else if (a == "-q" || a == "--quiet") o.quiet = true;
    else if (a == "--pattern") {
      gran_opt g = parse_granularity(need(i, a));
      if (g.kind != gran_kind::n_m) throw usage_error("--pattern needs N:M, e.g. 2:4");
      o.pattern = g;
    } else if (!a.empty() && a[0] == '-' && a != "-") throw usage_error("unknown option '" + a + "'");
    else pos.push_back(a);
  }
  if (o.command == "help" || o.command == "version") return o;
  if (pos.empty()) throw usage_error("no command; use prune, inspect or verify (see --help)");
  o.command = pos[0];
  if (o.command != "prune" && o.command != "inspect" && o.command != "verify")
    throw usage_error("unknown command '" + o.command + "'; use prune, inspect or verify");
  if (pos.size() < 2) throw usage_error(o.command + " needs an input file");
  o.inputs.assign(pos.begin() + 1, pos.end());
  const auto npys = std::count_if(o.inputs.begin(), o.inputs.end(), is_npy_path);
  if (o.inputs.size() > 1 && npys != static_cast<std::ptrdiff_t>(o.inputs.size()))
    throw usage_error(o.command + " takes one safetensors file (or index), or any number of .npy files; got " +
                      std::to_string(o.inputs.size()) + " inputs, not all .npy");
  for (const auto& in : o.inputs) o.input += (o.input.empty() ? "" : ", ") + in;
  if (o.command == "prune") {
    if (o.output.empty() && !o.dry_run) throw usage_error("prune needs -o OUT (or --dry-run)");
    const bool nm = o.gran.kind == gran_kind::n_m;
    if (!nm && !o.sparsity && o.table.empty()) throw usage_error("prune needs --sparsity S or --table FILE");
    if (o.sparsity && !o.table.empty()) throw usage_error("give --sparsity or --table, not both");
    if (o.global && !o.table.empty())
      throw usage_error("--table gives per-tensor amounts; it has no meaning with --scope global");
    if (!o.global && (o.min_sparsity || o.max_sparsity))
      throw usage_error("--min-sparsity / --max-sparsity bound each tensor's share of a global cut; add --scope global");
    if (o.crit == crit_kind::wanda && o.activations.empty())
      throw usage_error("--criterion wanda needs --activations FILE (per-input-channel activation norms)");
    if (o.crit != crit_kind::wanda && !o.activations.empty())
      throw usage_error("--activations is read by --criterion wanda only");
    if (o.crit == crit_kind::wanda && o.global)
      throw usage_error("--criterion wanda compares weights within each output row; use --scope tensor");
    if (nm && o.sparsity) {
      const double s = spruce::granularity::n_m_pattern{o.gran.a, o.gran.b, false}.sparsity();
      if (std::fabs(*o.sparsity - s) > 1e-9)
        throw usage_error("--granularity " + o.gran.text + " fixes the sparsity at 1 - N/M = " +
                          spruce::detail::shortest_decimal(s) + "; drop --sparsity or pass that value");
    }
  }
  if (o.command == "verify" && !o.pattern && !o.sparsity)
    throw usage_error("verify needs --pattern N:M or --sparsity S");
  return o;
}

// ---- the input checkpoint ------------------------------------------------------------

struct tensor_item {
  std::size_t shard = 0;
  const safetensors_entry* entry = nullptr;
  bool selected = false;
  std::string skip_reason;  // why a default-excluded tensor is not pruned ("" when not listed)
  std::optional<spruce::amount> amount;
  // results
  double before = 0, after = 0;
  std::size_t kept = 0;
  double ms = 0;
  bool pruned = false;
};

// One input file: a safetensors file, or a .npy file seen as a one-tensor checkpoint (the
// tensor named after the file's stem, no metadata). Either way the tensors are views into
// the mapping, with one exception: a Fortran-order or big-endian .npy array cannot be
// viewed as the C-order, native-endian tensor the library's API takes, so it is copied
// into that layout once at open (the tensor's size again) and written back in its own.
class input_file {
 public:
  explicit input_file(const fs::path& path) {
    if (path.extension() == ".npy") {
      npy_ = std::make_unique<spruce::io::npy_file>(path);
      const auto& a = npy_->array();
      entries_.push_back({path.stem().string(), a.dtype, a.shape, 0, a.data.size()});
      if (a.swapped() || (a.fortran_order && a.shape.size() > 1)) {
        native_ = spruce::io::to_native_c_order(a);
        npy_->mapping().release(0, npy_->mapping().size());
      }
    } else {
      st_ = std::make_unique<safetensors_file>(path);
    }
  }
  bool is_npy() const noexcept { return npy_ != nullptr; }
  const spruce::io::npy_array& npy() const { return npy_->array(); }
  const std::vector<safetensors_entry>& tensors() const noexcept { return st_ ? st_->tensors() : entries_; }
  const std::map<std::string, std::string>& metadata() const noexcept { return st_ ? st_->metadata() : no_metadata_; }
  std::uint64_t size() const noexcept { return st_ ? st_->mapping().size() : npy_->mapping().size(); }
  // The tensor's bytes: C order, native byte order.
  std::span<const std::byte> bytes(const safetensors_entry& e) const noexcept {
    if (st_) return st_->bytes(e);
    return native_.empty() ? npy_->array().data : std::span<const std::byte>(native_);
  }
  // Lets the kernel drop the pages of a tensor, or of a part of bytes(e), from the resident set.
  void release(const safetensors_entry& e) const noexcept { release(bytes(e)); }
  void release(std::span<const std::byte> part) const noexcept {
    const spruce::io::mapped_file& m = st_ ? st_->mapping() : npy_->mapping();
    const std::byte* base = m.bytes().data();
    if (part.empty() || part.data() < base || part.data() >= base + m.size()) return;  // not mapped (a copy)
    m.release(static_cast<std::size_t>(part.data() - base), part.size());
  }

 private:
  std::unique_ptr<safetensors_file> st_;
  std::unique_ptr<spruce::io::npy_file> npy_;
  std::vector<safetensors_entry> entries_;
  std::vector<std::byte> native_;
  std::map<std::string, std::string> no_metadata_;
};

struct checkpoint {
  bool sharded = false;
  bool npy = false;  // every input a .npy file (one tensor each)
  fs::path index_path;
  nlohmann::ordered_json index;  // the input index (metadata kept as it is)
  std::vector<std::string> shard_names;
  std::vector<fs::path> paths;  // the input files, one per shard
  std::vector<std::unique_ptr<input_file>> shards;
  std::vector<tensor_item> items;  // shard by shard, each in data-offset order
  std::uint64_t bytes = 0;
};

checkpoint open_checkpoint(const std::vector<std::string>& inputs) {
  checkpoint c;
  if (is_npy_path(inputs.front())) {
    // Several .npy files are one checkpoint of one tensor each, named by their stems.
    c.npy = true;
    std::map<std::string, std::string> stems;
    for (const auto& in : inputs) {
      c.paths.emplace_back(in);
      c.shard_names.push_back(fs::path(in).filename().string());
      c.shards.push_back(std::make_unique<input_file>(in));
      const auto& e = c.shards.back()->tensors().front();
      if (const auto [at, fresh] = stems.emplace(e.name, in); !fresh)
        throw error(".npy files '" + at->second + "' and '" + in + "' both name the tensor '" + e.name +
                    "' (the file's stem); tensors are told apart by name, so rename one");
      c.items.push_back(tensor_item{c.shards.size() - 1, &e, false, {}, {}, 0, 0, 0, 0, false});
    }
    for (const auto& sh : c.shards) c.bytes += sh->size();
    return c;
  }
  const std::string& in = inputs.front();
  const std::string suffix = ".index.json";
  if (in.size() > suffix.size() && in.compare(in.size() - suffix.size(), suffix.size(), suffix) == 0) {
    c.sharded = true;
    c.index_path = in;
    std::ifstream f(in, std::ios::binary);
    if (!f) throw error("cannot read index file '" + in + "': " + std::strerror(errno) + "; check the path");
    try {
      c.index = nlohmann::ordered_json::parse(f);
    } catch (const nlohmann::json::exception& e) {
      throw error("index file '" + in + "' is not valid JSON (" + e.what() + "); write it again");
    }
    if (!c.index.is_object() || !c.index.contains("weight_map") || !c.index["weight_map"].is_object())
      throw error("index file '" + in + "' has no \"weight_map\" object; pass a model.safetensors.index.json");
    std::map<std::string, std::string> wanted;
    for (const auto& [name, file] : c.index["weight_map"].items()) {
      if (!file.is_string()) throw error("index file '" + in + "': weight_map entry '" + name + "' is not a file name");
      const std::string shard = file.get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
        throw error("index file '" + in + "': shard name '" + shard + "' for '" + name +
                    "' is not a plain file name beside the index");
      if (std::find(c.shard_names.begin(), c.shard_names.end(), shard) == c.shard_names.end())
        c.shard_names.push_back(shard);
      wanted[name] = shard;
    }
    const fs::path dir = fs::path(in).parent_path();
    std::set<std::string> seen;
    for (std::size_t s = 0; s < c.shard_names.size(); ++s) {
      c.paths.push_back(dir / c.shard_names[s]);
      c.shards.push_back(std::make_unique<input_file>(c.paths.back()));
      for (const auto& e : c.shards.back()->tensors()) {
        if (!seen.insert(e.name).second)
          throw error("tensor '" + e.name + "' is in two shards of '" + in + "'; a checkpoint names each tensor once");
        const auto it = wanted.find(e.name);
        if (it == wanted.end() || it->second != c.shard_names[s])
          throw error("shard '" + c.shard_names[s] + "' holds tensor '" + e.name + "', which the index '" + in +
                      "' places " + (it == wanted.end() ? "nowhere" : "in '" + it->second + "'") +
                      "; the index and its shards disagree");
        c.items.push_back(tensor_item{s, &e, false, {}, {}, 0, 0, 0, 0, false});
      }
    }
    for (const auto& [name, shard] : wanted)
      if (!seen.count(name))
        throw error("index '" + in + "' places tensor '" + name + "' in '" + shard + "', which lacks it");
  } else {
    c.shard_names.push_back(fs::path(in).filename().string());
    c.paths.emplace_back(in);
    c.shards.push_back(std::make_unique<input_file>(in));
    for (const auto& e : c.shards.back()->tensors()) c.items.push_back(tensor_item{0, &e, false, {}, {}, 0, 0, 0, 0, false});
  }
  for (const auto& s : c.shards) c.bytes += s->size();
  return c;
}

std::string default_skip(const safetensors_entry& e) {
  const std::string& n = e.name;
  if (!spruce::io::is_prunable(e.dtype)) return "";
  if (!glob_match("*weight", n)) return "";
  if (glob_match("*embed*", n) || glob_match("*wte*", n) || glob_match("*wpe*", n)) return "skipped: embedding";
  if (glob_match("*norm*", n) || glob_match("*ln_*", n)) return "skipped: norm";
  if (e.shape.size() < 2) return "";
  return "-";  // selected
}

// Marks the tensors to prune and their amounts; validates the table.
void select_tensors(checkpoint& c, const options& o) {
  for (auto& it : c.items) {
    const auto& e = *it.entry;
    bool sel;
    if (o.include.empty() && c.npy) {
      sel = spruce::io::is_prunable(e.dtype) && !e.shape.empty();  // a .npy file named on the command line is meant
    } else if (o.include.empty()) {
      const std::string d = default_skip(e);
      sel = d == "-";
      if (!sel && !d.empty()) it.skip_reason = d;
    } else {
      sel = std::any_of(o.include.begin(), o.include.end(), [&](const std::string& g) { return glob_match(g, e.name); });
      if (sel && !spruce::io::is_prunable(e.dtype))
        throw error("--include selects tensor '" + e.name + "' of dtype " + std::string(spruce::io::dtype_name(e.dtype)) +
                    ", which has no floating value to prune; narrow the glob or add --exclude '" + e.name + "'");
    }
    if (sel && std::any_of(o.exclude.begin(), o.exclude.end(), [&](const std::string& g) { return glob_match(g, e.name); })) {
      sel = false;
      it.skip_reason = "skipped: --exclude";
    }
    it.selected = sel;
  }
  if (o.table.empty()) {
    if (o.sparsity)
      for (auto& it : c.items)
        if (it.selected) it.amount = spruce::amount(*o.sparsity);
    return;
  }
  std::ifstream f(o.table);
  if (!f) throw error("cannot read table file '" + o.table + "': " + std::strerror(errno) + "; check the path");
  std::string line;
  std::size_t lineno = 0;
  std::map<const tensor_item*, std::string> matched_by;
  std::set<const tensor_item*> candidates;  // the table assigns amounts within the selection
  for (auto& it : c.items)
    if (it.selected) candidates.insert(&it), it.selected = false, it.skip_reason = "skipped: not in the table";
  while (std::getline(f, line)) {
    ++lineno;
    if (const auto h = line.find('#'); h != std::string::npos) line.erase(h);
    for (char& ch : line)
      if (ch == ',' || ch == '\t' || ch == '\r') ch = ' ';
    std::istringstream ss(line);
    std::string glob, value, extra;
    if (!(ss >> glob)) continue;
    const std::string where = "table '" + o.table + "' line " + std::to_string(lineno);
    if (!(ss >> value) || (ss >> extra)) throw error(where + ": expected \"GLOB VALUE\", got '" + line + "'");
    spruce::amount a;
    if (value.find_first_of(".eE") != std::string::npos) {
      double r;
      try {
        r = parse_real("ratio", value);
      } catch (const usage_error&) {
        throw error(where + ": '" + value + "' is not a number");
      }
      if (!(r >= 0 && r <= 1)) throw error(where + ": ratio " + value + " is outside [0, 1]");
      a = spruce::amount(r);
    } else {
      try {
        a = spruce::amount(parse_whole("count", value));
      } catch (const usage_error&) {
        throw error(where + ": '" + value + "' is neither a ratio (e.g. 0.5) nor a count (e.g. 120)");
      }
    }
    std::size_t hits = 0;
    for (auto& it : c.items) {
      if (!glob_match(glob, it.entry->name) || !candidates.count(&it)) continue;
      ++hits;
      if (const auto prev = matched_by.find(&it); prev != matched_by.end())
        throw error("tensor '" + it.entry->name + "' is selected twice in table '" + o.table + "' (" + prev->second +
                    " and line " + std::to_string(lineno) + "); make the globs disjoint");
      matched_by[&it] = "line " + std::to_string(lineno);
      it.selected = true;
      it.skip_reason.clear();
      it.amount = a;
    }
    if (hits == 0)
      throw error(where + ": '" + glob + "' names no tensor of '" + o.input + "' that --include / --exclude (or the "
                  "default selection) leaves to prune; list the names with `spruce-prune inspect`");
  }
}

// ---- masks from the library ------------------------------------------------------------

template <class F>
decltype(auto) visit_granularity(const gran_opt& g, F&& f) {
  namespace gr = spruce::granularity;
  switch (g.kind) {
    case gran_kind::row: return f(gr::vector{-1});
    case gran_kind::column: return f(gr::vector{0});
    case gran_kind::filter: return f(gr::filter{});
    case gran_kind::channel: return f(gr::channel{});
    case gran_kind::block: return f(gr::block{g.a, g.b});
    case gran_kind::n_m: return f(gr::n_m_pattern{g.a, g.b, false});
    case gran_kind::element: break;
  }
  return f(gr::element{});
}

template <class F>
decltype(auto) visit_criterion(crit_kind c, F&& f) {
  if (c == crit_kind::l2) return f(spruce::criterion::l2{});
  if (c == crit_kind::wanda) return f(spruce::criterion::wanda{});
  return f(spruce::criterion::l1{});
}

template <class F>
decltype(auto) visit_rule(rule_kind r, F&& f) {
  if (r == rule_kind::exact) return f(spruce::selection::exact{});
  return f(spruce::selection::threshold{});
}

// The keep mask of one tensor under the per-tensor scope: exactly the library call a C++
// user would make (pruner::compute; per_row_mask for Wanda under element granularity, the
// paper's per-output-row comparison; element scores + n_m_mask for Wanda under N:M).
template <class T>
spruce::mask tensor_mask(const options& o, const spruce::tensor_ref<const T>& w, const spruce::amount& a,
                         std::span<const T> norms, const std::string& name) {
  using namespace spruce;
  return visit_granularity(o.gran, [&](auto g) -> mask {
    using G = std::remove_cvref_t<decltype(g)>;
    return visit_criterion(o.crit, [&](auto c) -> mask {
      using C = std::remove_cvref_t<decltype(c)>;
      constexpr bool is_wanda = std::is_same_v<C, criterion::wanda>;
      criterion::inputs<T, criterion::activation_norms<T>> in{w};
      in.extra.norms = norms;
      if constexpr (granularity::n_m_granularity<G>) {
        if constexpr (is_wanda) {
          g.validate(name);
          const std::vector<T> s = spruce::scores(granularity::element{}, c, in, name);
          return n_m_mask(tensor_ref<const T>(s.data(), w.shape()), g, name);
        } else {
          return pruner<G, C>{g, c}.compute(w, name);
        }
      } else {
        return visit_rule(o.rule, [&](auto tag) -> mask {
          using S = std::remove_cvref_t<decltype(tag)>;
          const S rule = amount_rule<S>::make(a, spruce::detail::groups_of(g, w.shape(), name), name);
          if constexpr (is_wanda) {
            if constexpr (granularity::one_weight_per_group_v<G>)
              return per_row_mask(c, rule, in, name);
            else
              return pruner<G, C, S>{g, c, rule}.compute(in, name);
          } else {
            return pruner<G, C, S>{g, c, rule}.compute(w, name);
          }
        });
      }
    });
  });
}

// Checks what can be checked from shapes alone, before any byte is written.
void check_shape(const options& o, const safetensors_entry& e) {
  visit_granularity(o.gran, [&](auto g) {
    using G = std::remove_cvref_t<decltype(g)>;
    if constexpr (spruce::granularity::n_m_granularity<G>) {
      if (e.shape.size() < 2)
        throw error("tensor '" + e.name + "' has shape " + spruce::shape_string(e.shape) + ", but an N:M pattern runs "
                    "along the input axis (axis 1) of a weight of rank >= 2; --exclude it");
      if (e.shape[1] % g.m != 0)
        throw error("N:M pattern " + o.gran.text + " for tensor '" + e.name + "' of shape " +
                    spruce::shape_string(e.shape) + ": the input axis (axis 1) has " + std::to_string(e.shape[1]) +
                    " weights, not a multiple of " + std::to_string(g.m) + "; --exclude the tensor or pick an M "
                    "that divides it");
    } else {
      (void)g.layout(std::span<const std::size_t>(e.shape), e.name);
    }
    return 0;
  });
}

// Values of a tensor as T: a view into the mapping when the dtype is T's and the data is
// aligned, else a converted copy in `scratch`.
template <class T>
spruce::tensor_ref<const T> values_of(dtype d, std::span<const std::byte> b, std::span<const std::size_t> shape,
                                      std::vector<T>& scratch, const std::string& name) {
  const bool own = (sizeof(T) == 4 && d == dtype::f32) || (sizeof(T) == 8 && d == dtype::f64);
  if (own && reinterpret_cast<std::uintptr_t>(b.data()) % alignof(T) == 0)
    return spruce::tensor_ref<const T>(reinterpret_cast<const T*>(b.data()), shape);
  scratch.resize(b.size() / spruce::io::dtype_size(d));
  if (!spruce::io::is_prunable(d))  // to_values' own message, before any thread starts
    spruce::io::to_values(d, b.data(), 0, scratch.data(), false, "tensor '" + name + "'");
  const std::size_t es = spruce::io::dtype_size(d);
  spruce::parallel_chunks(scratch.size(), [&](std::size_t, std::size_t, std::size_t i, std::size_t e) {
    spruce::io::to_values(d, b.data() + i * es, e - i, scratch.data() + i, false);
  });
  return spruce::tensor_ref<const T>(scratch.data(), shape);
}

template <class T>
spruce::tensor_ref<const T> values_of(const input_file& f, const safetensors_entry& e, std::vector<T>& scratch) {
  return values_of<T>(e.dtype, f.bytes(e), std::span<const std::size_t>(e.shape), scratch, e.name);
}

// Zeros (+0 or -0) of a floating tensor, counted on the helper pool: a value is zero when
// every bit but the sign is clear, in each of the four dtypes.
std::size_t count_zeros(const input_file& f, const safetensors_entry& e) {
  const std::byte* p = f.bytes(e).data();
  const std::size_t n = e.elements(), es = spruce::io::dtype_size(e.dtype);
  std::vector<std::size_t> part(static_cast<std::size_t>(spruce::max_threads()), 0);
  auto count = [&](auto tag) {
    using U = decltype(tag);
    constexpr U magnitude = static_cast<U>(~(U{1} << (sizeof(U) * 8 - 1)));
    spruce::parallel_chunks(n, [&](std::size_t c, std::size_t, std::size_t b, std::size_t end) {
      std::size_t z = 0;
      for (std::size_t i = b; i < end; ++i) {
        U u;
        std::memcpy(&u, p + i * sizeof(U), sizeof(U));
        z += (u & magnitude) == 0;
      }
      part[c] = z;
    });
  };
  if (es == 2) count(std::uint16_t{});
  else if (es == 4) count(std::uint32_t{});
  else count(std::uint64_t{});
  std::size_t z = 0;
  for (std::size_t v : part) z += v;
  return z;
}

// The score of a one-weight group under L2, sqrt(0 + w*w), with the very operations the
// library's group_scores uses (so equal weights tie exactly as they do there).
template <class T>
T l2_element_score(T w) noexcept {
  const spruce::criterion::l2 c;
  return c.finish(c.reduce(c.template identity<T>(), c.element(w, T(0), T(0))));
}

// ---- global scope --------------------------------------------------------------------

// One selection over the scores of every selected tensor (the library's histogram /
// select passes, segment by segment over the mapped tensors; nothing concatenated), with
// the library's semantics: scores as global_masks builds them (|w| for element + L1, the
// group scores otherwise), the rule's count of the total, ties by tensor then index for
// `exact`, and sparsity_limits enforced in rounds exactly as global_masks does.
template <class T>
class global_cut {
 public:
  // Element scores read from the mapping (converted on the fly), or group scores.
  struct source {
    const std::byte* p = nullptr;
    dtype d = dtype::f32;
    bool l2 = false;  // element + L2: the group score sqrt(0 + w*w) of a one-weight group
    T value(std::size_t i) const {
      T w = spruce::io::load_element<T>(d, p, i);
      return l2 ? l2_element_score(w) : w;
    }
  };
  template <class O>
  struct reader {
    source s;
    typename O::key_type operator()(std::size_t i) const { return O::key(s.value(i)); }
  };

  global_cut(const options& o, const checkpoint& c, const std::vector<std::size_t>& which) : o_(o), c_(c), which_(which) {
    visit_granularity(o.gran, [&](auto g) {
      using G = std::remove_cvref_t<decltype(g)>;
      if constexpr (spruce::granularity::n_m_granularity<G>) {
        // The pattern is local: global scope leaves each tensor its own N:M mask, and
        // bounds have nothing to bound (the library's own check and message).
        nm_ = true;
        const std::vector<spruce::named_tensor<T>> none;
        (void)spruce::global_masks(spruce::pruner<G, spruce::criterion::l1>{g, {}}, none, limits());
      } else {
        run(g);
      }
      return 0;
    });
  }

  bool n_m() const { return nm_; }

  // The mask of the k-th selected tensor (not for N:M, whose masks are row-local and
  // computed block by block in n_m_blocks).
  spruce::mask mask_of(std::size_t k) const {
    const auto& e = *c_.items[which_[k]].entry;
    return visit_granularity(o_.gran, [&](auto g) -> spruce::mask {
      using G = std::remove_cvref_t<decltype(g)>;
      if constexpr (spruce::granularity::n_m_granularity<G>) {
        throw error("internal: the N:M mask of '" + e.name + "' is computed block by block");
      } else {
        const cut& ct = cuts_[k];
        const source src = source_of(k);
        const std::size_t n = sizes_[k];
        spruce::byte_buffer keep(n);
        std::size_t ties = 0;
        for (std::size_t i = 0; i < n; ++i) {
          if (ct.keep_all) {
            keep[i] = 1;
            continue;
          }
          const auto key = fused_ ? key_of<spruce::select::by_magnitude<T>>(src, i) : key_of<spruce::select::by_value<T>>(src, i);
          if (key != ct.t) keep[i] = key > ct.t;
          else keep[i] = ties++ >= ct.tie_prune;
        }
        if (fused_ || spruce::granularity::one_weight_per_group_v<G>)
          return spruce::mask::adopt(std::span<const std::size_t>(e.shape), std::move(keep));
        const auto layout = g.layout(std::span<const std::size_t>(e.shape), e.name);
        return spruce::mask::adopt(std::span<const std::size_t>(e.shape), spruce::expand_groups(layout, keep));
      }
    });
  }

 private:
  using key_type = spruce::select::key_t<T>;
  struct cut {
    bool keep_all = true;
    key_type t{};
    std::size_t tie_prune = 0;
  };

  template <class O>
  static key_type key_of(const source& s, std::size_t i) {
    return O::key(s.value(i));
  }

  spruce::sparsity_limits limits() const {
    spruce::sparsity_limits l;
    if (o_.min_sparsity) l.min = *o_.min_sparsity;
    if (o_.max_sparsity) l.max = *o_.max_sparsity;
    return l;
  }

  source source_of(std::size_t k) const {
    if (!scores_[k].empty())
      return {reinterpret_cast<const std::byte*>(scores_[k].data()), sizeof(T) == 4 ? dtype::f32 : dtype::f64, false};
    const auto& it = c_.items[which_[k]];
    return {c_.shards[it.shard]->bytes(*it.entry).data(), it.entry->dtype, l2_};
  }

  template <class G>
  void run(const G& g) {
    using namespace spruce;
    const sparsity_limits lim = limits();
    spruce::detail::check_limits(lim);
    fused_ = granularity::one_weight_per_group_v<G> && o_.crit == crit_kind::l1;
    l2_ = granularity::one_weight_per_group_v<G> && o_.crit == crit_kind::l2;
    const std::size_t nt = which_.size();
    scores_.resize(nt);
    sizes_.resize(nt);
    names_.resize(nt);
    for (std::size_t k = 0; k < nt; ++k) {
      const auto& it = c_.items[which_[k]];
      names_[k] = it.entry->name;
      if (granularity::one_weight_per_group_v<G>) {
        sizes_[k] = it.entry->elements();
      } else {  // group scores, one tensor at a time (the tensor's values are then dropped)
        std::vector<T> scratch;
        const auto w = values_of<T>(*c_.shards[it.shard], *it.entry, scratch);
        visit_criterion(o_.crit, [&](auto crit) {
          if constexpr (!std::is_same_v<decltype(crit), criterion::wanda>) scores_[k] = spruce::scores(g, crit, w, names_[k]);
          return 0;
        });
        sizes_[k] = scores_[k].size();
        c_.shards[it.shard]->release(*it.entry);
      }
    }
    if (fused_) select_all<select::by_magnitude<T>>(lim);
    else select_all<select::by_value<T>>(lim);
  }

  template <class O>
  void select_all(const spruce::sparsity_limits& lim) {
    using namespace spruce;
    using seg = select::detail::segment<reader<O>>;
    const std::size_t nt = which_.size();
    std::size_t total = 0;
    std::vector<spruce::detail::global_part> bound(nt);
    for (std::size_t k = 0; k < nt; ++k) bound[k] = spruce::detail::limits_for(sizes_[k], lim), total += sizes_[k];
    const auto ties = o_.rule == rule_kind::exact ? select::tie_break::lower_index : select::tie_break::all_equal;
    std::size_t budget = visit_rule(o_.rule, [&](auto tag) {
      using S = std::remove_cvref_t<decltype(tag)>;
      return amount_rule<S>::make(amount(*o_.sparsity), 0, "the global selection").count(total, "the global selection");
    });
    cuts_.assign(nt, cut{});
    std::vector<char> fixed(nt, 0);
    auto segment_of = [&](std::size_t k, std::size_t offset) {
      return seg{offset, sizes_[k], reader<O>{source_of(k)}, nullptr, names_[k]};
    };
    for (std::size_t round = 0; round <= nt; ++round) {
      std::vector<std::size_t> free;
      std::vector<seg> segs;
      std::size_t free_total = 0;
      for (std::size_t k = 0; k < nt; ++k)
        if (!fixed[k]) free.push_back(k), segs.push_back(segment_of(k, free_total)), free_total += sizes_[k];
      if (free.empty()) break;
      const std::size_t count = std::min(budget, free_total);
      const std::span<const seg> view(segs);
      select::detail::key_info<key_type> info{};
      if (count == 0) select::detail::validate_scores<O>(view);
      else info = select::detail::select_lowest<O>(view, count, ties);
      std::size_t tie_budget = count == 0 ? 0 : count - info.less;
      bool violated = false;
      for (std::size_t j = 0; j < free.size(); ++j) {
        const std::size_t k = free[j];
        cut ct;
        std::size_t pruned = 0;
        if (count > 0) {
          std::size_t less = 0, equal = 0;
          const reader<O> r = segs[j].src;
          for (std::size_t i = 0; i < sizes_[k]; ++i) {
            const key_type key = r(i);
            less += key < info.key;
            equal += key == info.key;
          }
          const std::size_t tie = ties == select::tie_break::all_equal ? equal : std::min(equal, tie_budget);
          tie_budget -= std::min(tie_budget, tie);
          ct = cut{false, info.key, tie};
          pruned = less + tie;
        }
        if (lim.bounded() && (pruned < bound[k].lo || pruned > bound[k].hi)) {
          const std::size_t at = pruned < bound[k].lo ? bound[k].lo : bound[k].hi;
          ct = cut{};
          if (at > 0) {
            const seg one = segment_of(k, 0);
            const auto i1 = select::detail::select_lowest<O>(std::span<const seg>(&one, 1), at, select::tie_break::lower_index);
            ct = cut{false, i1.key, at - i1.less};
          }
          fixed[k] = 1;
          budget -= std::min(budget, at);
          violated = true;
        }
        cuts_[k] = ct;
      }
      if (!violated) break;
    }
  }

  const options& o_;
  const checkpoint& c_;
  std::vector<std::size_t> which_;
  bool nm_ = false, fused_ = false, l2_ = false;
  std::vector<std::vector<T>> scores_;
  std::vector<std::size_t> sizes_;
  std::vector<std::string> names_;
  std::vector<cut> cuts_;
};

// ---- output ------------------------------------------------------------------------------

// Where a pruned file goes: a safetensors file (one writer per shard), written tensor by
// tensor through the atomic writer and committed only when the whole run succeeded.
// A .npy output gets the input's dtype, shape, memory order and byte order: its one
// tensor streams straight to the file when the input is C order and native-endian, and is
// otherwise gathered (it arrives in C order, native-endian) and laid out as the input's at
// its last byte.
class output {
 public:
  output(const fs::path& path, std::span<const spruce::io::safetensors_spec> specs,
         const std::map<std::string, std::string>& metadata)
      : st_(std::make_unique<spruce::io::safetensors_writer>(path, specs, metadata, "the pruned checkpoint")) {}
  output(const fs::path& path, const spruce::io::npy_array& like)
      : like_(&like) {
    const std::string head = spruce::io::npy_header(like.dtype, like.shape, like.fortran_order, like.big_endian);
    npy_ = std::make_unique<spruce::io::atomic_writer>(path, "the pruned .npy file", head.size() + like.data.size());
    npy_->write(head);
    if (like.swapped() || (like.fortran_order && like.shape.size() > 1)) staged_.reserve(like.data.size());
    else like_ = nullptr;  // streams
  }
  void write(std::span<const std::byte> bytes) {
    if (st_) return st_->write(bytes);
    if (!like_) return npy_->write(bytes);
    staged_.insert(staged_.end(), bytes.begin(), bytes.end());
    if (staged_.size() == like_->data.size()) {
      npy_->write(spruce::io::from_native_c_order(staged_, like_->dtype, like_->shape, like_->fortran_order,
                                                  like_->big_endian));
      std::vector<std::byte>().swap(staged_);
    }
  }
  void commit() {
    if (st_) st_->commit();
    else npy_->commit();
  }
  // True when write() only copies into the writer's staging buffers (O_DIRECT: the device
  // writes run on the writer's own threads), so a caller need not write on a thread of its own.
  bool direct() const noexcept { return st_ ? st_->direct() : (!like_ && npy_->direct()); }
  // Zero-copy appends into the writer's staging block (atomic_writer::staging_space());
  // empty when the writer does not stage or the tensor is gathered for a re-layout.
  std::span<std::byte> staging_space() noexcept {
    if (st_) return st_->staging_space();
    return like_ ? std::span<std::byte>{} : npy_->staging_space();
  }
  void advance(std::size_t n) {
    if (st_) st_->advance(n);
    else npy_->advance(n);
  }

 private:
  std::unique_ptr<spruce::io::safetensors_writer> st_;
  std::unique_ptr<spruce::io::atomic_writer> npy_;
  const spruce::io::npy_array* like_ = nullptr;  // set while the tensor must be re-laid out
  std::vector<std::byte> staged_;
};

// Zeros before and nonzeros kept, for the report.
struct masked_counts {
  std::size_t zeros_before = 0, nonzero_after = 0, kept = 0;
};

// Output bits o[i - b] for elements [b, e) of src (bits U): the element where keep(v, i)
// says so, +0 (all zero bits in every floating dtype) where not; counts what the report
// shows. Branch-free, so it vectorises.
template <class U, class Keep>
masked_counts mask_range(const std::byte* src, std::size_t b, std::size_t e, U* __restrict o, const Keep keep) {
  constexpr U magnitude = static_cast<U>(~(U{1} << (sizeof(U) * 8 - 1)));  // all bits but the sign
  // 32-bit counters (a range is at most one piece of write_kept_as, 4 MiB): twice the lanes of size_t ones.
  std::uint32_t zeros = 0, nonzero = 0, kept = 0;
  for (std::size_t i = b; i < e; ++i) {
    U v;
    std::memcpy(&v, src + i * sizeof(U), sizeof(U));
    const bool nz = (v & magnitude) != 0;
    const bool k = keep(v, i);
    zeros += !nz;
    nonzero += nz & k;
    kept += k;
    o[i - b] = static_cast<U>(v & static_cast<U>(-static_cast<U>(k)));
  }
  return {zeros, nonzero, kept};
}

// Streams the bytes of a tensor with the pruned elements zeroed to `out` (or nowhere, for
// --dry-run), so no second copy of the tensor exists; kept elements are copied bit for bit.
// Each piece is filled on every core (the helper pool) by `fill(b, e, o)`, which writes
// elements [b, e) to o (a mask_range) and returns its counts. A direct output (O_DIRECT, a
// file of 64 MiB or more) is filled in place, up to a 4 MiB staging block at a time
// (output::staging_space), and writes its blocks to the device on its own threads. Any
// other output gets 1 MiB chunks from two buffers: while one chunk's write (a copy into the
// page cache, kernel time on one core) runs on its own thread, the next chunk is filled;
// writes stay in order, one at a time, and a failed write's error is rethrown here.
template <class U, class Fill>
masked_counts write_kept_as(output* out, std::size_t n, const Fill& fill) {
  std::vector<masked_counts> part(static_cast<std::size_t>(spruce::max_threads()));
  masked_counts c;
  auto fill_into = [&](std::size_t b, std::size_t e, U* o) {
    std::fill(part.begin(), part.end(), masked_counts{});
    spruce::parallel_chunks(e - b, [&](std::size_t j, std::size_t, std::size_t jb, std::size_t je) {
      part[j] = fill(b + jb, b + je, o + jb);
    });
    for (const auto& q : part) c.zeros_before += q.zeros_before, c.nonzero_after += q.nonzero_after, c.kept += q.kept;
  };
  std::size_t b = 0;
  // In place while the staging block is aligned for U: the block is 4 KiB-aligned and a
  // multiple of sizeof(U) long, so an aligned free rest holds at least one whole element.
  // (A tensor after one of odd length, say a BOOL buffer, starts unaligned: the copies.)
  for (std::span<std::byte> space; out && b < n && !(space = out->staging_space()).empty() &&
                                   reinterpret_cast<std::uintptr_t>(space.data()) % alignof(U) == 0;) {
    const std::size_t e = std::min(n, b + space.size() / sizeof(U));
    fill_into(b, e, reinterpret_cast<U*>(space.data()));
    out->advance((e - b) * sizeof(U));
    b = e;
  }
  constexpr std::size_t chunk = (std::size_t{1} << 20) / sizeof(U);  // 1 MiB of output
  std::vector<U> bufs[2];
  std::future<void> writing;  // the previous chunk's write, from the other buffer
  for (std::size_t k = 0; b < n; b += chunk, ++k) {
    const std::size_t e = std::min(n, b + chunk);
    std::vector<U>& buf = bufs[k % 2];
    buf.resize(e - b);
    fill_into(b, e, buf.data());
    if (writing.valid()) writing.get();
    if (out) {
      const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(buf.data()), (e - b) * sizeof(U));
      if (out->direct()) out->write(bytes);
      else writing = std::async(std::launch::async, [out, bytes] { out->write(bytes); });
    }
  }
  if (writing.valid()) writing.get();
  return c;
}

template <class U>
masked_counts write_masked_as(output* out, std::span<const std::byte> src, const spruce::mask& m) {
  const std::uint8_t* keep = m.data();
  return write_kept_as<U>(out, m.size(), [&](std::size_t b, std::size_t e, U* o) {
    return mask_range<U>(src.data(), b, e, o, [keep](U, std::size_t i) { return keep[i] != 0; });
  });
}

masked_counts write_masked(output* out, std::span<const std::byte> src, std::size_t esize, const spruce::mask& m) {
  if (esize == 2) return write_masked_as<std::uint16_t>(out, src, m);
  if (esize == 4) return write_masked_as<std::uint32_t>(out, src, m);
  return write_masked_as<std::uint64_t>(out, src, m);
}

// ---- element pruning straight from the file's bytes --------------------------------------

// The bits of one element of dtype D, and its value as T.
template <dtype D>
using bits_of = std::conditional_t<D == dtype::f64, std::uint64_t, std::conditional_t<D == dtype::f32, std::uint32_t, std::uint16_t>>;

template <class T, dtype D>
T value_of_bits(bits_of<D> u) noexcept {
  if constexpr (D == dtype::f16) return static_cast<T>(spruce::io::f16_to_float(u));
  else if constexpr (D == dtype::bf16) return static_cast<T>(spruce::io::bf16_to_float(u));
  else if constexpr (D == dtype::f32) return static_cast<T>(std::bit_cast<float>(u));
  else return static_cast<T>(std::bit_cast<double>(u));
}

// The selection keys of a tensor's elements read from its bytes: under L1 by_magnitude<T>
// of the value converted to T (magnitude_mask's fused key), under L2 by_value<T> of the L2
// score (the score pruner<element, l2, S> selects on). For an F16 / BF16 tensor these are
// exactly the keys of its float copy, so the cut is the library's, without the copy.
template <class T, dtype D, bool L2>
struct byte_keys {
  using order = std::conditional_t<L2, spruce::select::by_value<T>, spruce::select::by_magnitude<T>>;
  using key_type = typename order::key_type;
  const std::byte* p = nullptr;
  static key_type of_bits(bits_of<D> u) noexcept {
    const T w = value_of_bits<T, D>(u);
    if constexpr (L2) return order::key(l2_element_score(w));
    else return order::key(w);
  }
  key_type operator()(std::size_t i) const noexcept {
    bits_of<D> u;
    std::memcpy(&u, p + i * sizeof(u), sizeof(u));
    return of_bits(u);
  }
};

// Element granularity, L1 or L2, per-tensor scope (F16 / BF16 / F32 scored in float, F64 in
// double): the library's selection (select::lowest_cut, the passes lowest_mask runs) over
// keys read from the mapped bytes, then one streaming pass that decides every element from
// its key while writing: kept iff key >= lo before the cut's tie_end and key >= hi from it
// on (lo = key + 1: ties there are pruned; hi = key: ties kept). Neither a float copy nor a
// mask of the tensor exists.
template <class T, dtype D, bool L2, class S>
masked_counts element_prune_as(output* out, std::span<const std::byte> bytes, std::size_t n, const S& rule,
                               const std::string& name) {
  using K = byte_keys<T, D, L2>;
  using U = bits_of<D>;
  using key_type = typename K::key_type;
  const std::string label = spruce::detail::tensor_label(name);
  const auto cut = spruce::select::lowest_cut<typename K::order>(n, K{bytes.data()}, rule.count(n, label), S::ties, label);
  // A valid key is at most O::max_key, below the largest key_type, so key + 1 cannot wrap.
  const key_type lo = cut.selects_none ? key_type{0} : static_cast<key_type>(cut.key + 1);
  const key_type hi = cut.selects_none ? key_type{0} : cut.key;
  const std::size_t tie_end = cut.selects_none ? 0 : std::min(cut.tie_end, n);
  return write_kept_as<U>(out, n, [&](std::size_t b, std::size_t e, U* o) {
    const std::size_t m = std::clamp(tie_end, b, e);
    masked_counts c = mask_range<U>(bytes.data(), b, m, o, [lo](U v, std::size_t) { return K::of_bits(v) >= lo; });
    const masked_counts d = mask_range<U>(bytes.data(), m, e, o + (m - b), [hi](U v, std::size_t) { return K::of_bits(v) >= hi; });
    c.zeros_before += d.zeros_before, c.nonzero_after += d.nonzero_after, c.kept += d.kept;
    return c;
  });
}

// True when element_prune (above) gives this tensor's mask: element granularity, L1 or L2,
// a count rule, the per-tensor scope.
bool streams_elements(const options& o) {
  return o.gran.kind == gran_kind::element && !o.global && (o.crit == crit_kind::l1 || o.crit == crit_kind::l2);
}

template <class S>
masked_counts element_prune(const options& o, output* out, dtype d, std::span<const std::byte> bytes, std::size_t n,
                            const S& rule, const std::string& name) {
  auto go = [&]<class T, dtype D>() {
    return o.crit == crit_kind::l2 ? element_prune_as<T, D, true>(out, bytes, n, rule, name)
                                   : element_prune_as<T, D, false>(out, bytes, n, rule, name);
  };
  switch (d) {
    case dtype::f16: return go.template operator()<float, dtype::f16>();
    case dtype::bf16: return go.template operator()<float, dtype::bf16>();
    case dtype::f32: return go.template operator()<float, dtype::f32>();
    default: return go.template operator()<double, dtype::f64>();
  }
}

struct progress {
  std::uint64_t total = 0, done = 0;
  bool on = false;
  void step(std::uint64_t bytes) {
    done += bytes;
    if (!on) return;
    std::fprintf(stderr, "\rspruce-prune: %llu / %llu MB (%d%%)", static_cast<unsigned long long>(done >> 20),
                 static_cast<unsigned long long>(total >> 20), total ? static_cast<int>(100 * done / total) : 100);
    std::fflush(stderr);
  }
  void finish() {
    if (on) std::fprintf(stderr, "\n");
  }
};

std::string shape_text(const std::vector<std::size_t>& s) { return spruce::shape_string(s); }

std::string fmt(double x, int prec = 4) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", prec, x);
  return b;
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> w;
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size(); ++i) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], r[i].size());
    }
  for (const auto& r : rows) {
    std::string line;
    for (std::size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(w[i] - r[i].size() + 2, ' ');
    }
    std::cout << line << '\n';
  }
}

// Where the pruned .npy files go: OUT itself for one input (named *.npy), or, when OUT is an
// existing directory, OUT/<the input's file name> for each input.
std::vector<fs::path> npy_output_paths(const options& o, const checkpoint& c) {
  std::error_code ec;
  std::vector<fs::path> paths;
  if (fs::is_directory(o.output, ec)) {
    for (const auto& s : c.shard_names) paths.push_back(fs::path(o.output) / s);
    return paths;
  }
  if (c.shards.size() > 1)
    throw error("output '" + o.output + "' for " + std::to_string(c.shards.size()) + " .npy inputs is not an existing "
                "directory; create it first: each input is written there under its own file name");
  if (!is_npy_path(o.output))
    throw error("output '" + o.output + "' for the .npy input '" + o.input + "' does not end in .npy; the output is "
                "a .npy file like the input (name it *.npy, or give an existing directory)");
  paths.emplace_back(o.output);
  return paths;
}

fs::path output_index_path(const options& o, const checkpoint& c) {
  fs::path out = o.output;
  std::error_code ec;
  if (fs::is_directory(out, ec)) return out / c.index_path.filename();
  if (out.extension() != ".json")
    throw error("output '" + o.output + "' for the sharded checkpoint '" + o.input + "' is neither an existing "
                "directory nor an index file name (*.index.json); create the directory first or name the index");
  return out;
}

// The mask of one selected tensor (per-tensor scope, or its share of a global cut).
template <class T>
spruce::mask one_mask(const options& o, const input_file& f, tensor_item& it, const safetensors_file* acts,
                      const global_cut<T>* global, std::size_t k) {
  const auto& e = *it.entry;
  if (global) return global->mask_of(k);  // reads the mapped bytes (or group scores) itself
  std::vector<T> scratch;
  const spruce::tensor_ref<const T> w = values_of<T>(f, e, scratch);
  if (!scratch.empty()) f.release(e);  // converted: the mapped pages are not needed until the write
  std::vector<T> norms;
  if (acts) {
    const auto& a = acts->at(e.name);
    norms.resize(a.elements());
    acts->read_values(a, std::span<T>(norms));
  }
  return tensor_mask<T>(o, w, it.amount.value_or(spruce::amount(0.0)), norms, e.name);
}

// An N:M mask is row-local (the groups run along axis 1 inside each output row), so a
// tensor is pruned in blocks of whole rows of about 4 MiB: the library's mask of each
// block is exactly that block's rows of the whole tensor's mask, and no copy of the whole
// tensor (a float one of an F16 / BF16 tensor, or its mask) ever exists.
template <class T>
masked_counts n_m_blocks(const options& o, const input_file& f, const safetensors_entry& e,
                         const safetensors_file* acts, output* out) {
  std::vector<T> norms;
  if (acts) {
    const auto& a = acts->at(e.name);
    norms.resize(a.elements());
    acts->read_values(a, std::span<T>(norms));
  }
  const auto bytes = f.bytes(e);
  const std::size_t es = spruce::io::dtype_size(e.dtype), rows = e.shape[0];
  const std::size_t row = rows ? e.elements() / rows : 0;
  const std::size_t block = std::max<std::size_t>(1, (std::size_t{4} << 20) / std::max<std::size_t>(1, row * sizeof(T)));
  masked_counts c;
  std::vector<T> scratch;  // one block's values, reused across blocks
  std::vector<std::size_t> shape = e.shape;
  for (std::size_t r0 = 0; r0 < rows || (rows == 0 && r0 == 0); r0 += block) {
    const std::size_t r1 = std::min(rows, r0 + block);
    shape[0] = r1 - r0;
    const auto part = bytes.subspan(r0 * row * es, (r1 - r0) * row * es);
    const auto w = values_of<T>(e.dtype, part, std::span<const std::size_t>(shape), scratch, e.name);
    const spruce::mask m = tensor_mask<T>(o, w, spruce::amount(0.0), norms, e.name);
    const masked_counts b = write_masked(out, part, es, m);
    c.zeros_before += b.zeros_before, c.nonzero_after += b.nonzero_after, c.kept += b.kept;
    f.release(part);
    if (rows == 0) break;
  }
  return c;
}

template <class T>
int prune_as(const options& o, checkpoint& c) {
  std::vector<std::size_t> which;
  for (std::size_t i = 0; i < c.items.size(); ++i)
    if (c.items[i].selected) which.push_back(i);
  // Validate what shapes and inputs tell before any work or any file.
  for (std::size_t k : which) check_shape(o, *c.items[k].entry);
  std::unique_ptr<safetensors_file> acts;
  if (o.crit == crit_kind::wanda) {
    acts = std::make_unique<safetensors_file>(o.activations);
    for (std::size_t k : which) {
      const auto& e = *c.items[k].entry;
      const auto* a = acts->header().find(e.name);
      if (!a)
        throw error("activations file '" + o.activations + "' has no tensor '" + e.name +
                    "'; store one norm per input channel under the weight's own name");
      if (!spruce::io::is_prunable(a->dtype) || a->elements() != e.shape[1])
        throw error("activations '" + e.name + "' in '" + o.activations + "' has shape " + shape_text(a->shape) +
                    " of " + std::string(spruce::io::dtype_name(a->dtype)) + ", but the weight " + shape_text(e.shape) +
                    " has " + std::to_string(e.shape[1]) + " input channels; store that many floating norms");
    }
  }
  std::optional<global_cut<T>> global;
  if (o.global) global.emplace(o, c, which);

  // Outputs: one writer per shard, all committed at the end (a failure leaves none).
  const bool write = !o.dry_run;
  std::vector<std::unique_ptr<output>> writers;
  fs::path out_index;
  if (write) {
    std::vector<fs::path> paths;
    if (c.sharded) {
      out_index = output_index_path(o, c);
      for (const auto& s : c.shard_names) paths.push_back(out_index.parent_path() / s);
    } else if (c.npy) {
      paths = npy_output_paths(o, c);
    } else {
      paths.push_back(o.output);
    }
    for (std::size_t s = 0; s < c.shards.size(); ++s) {
      if (c.npy) {
        writers.push_back(std::make_unique<output>(paths[s], c.shards[s]->npy()));
        continue;
      }
      std::vector<spruce::io::safetensors_spec> specs;
      for (const auto& e : c.shards[s]->tensors()) specs.push_back({e.name, e.dtype, e.shape});
      writers.push_back(std::make_unique<output>(paths[s], specs, c.shards[s]->metadata()));
    }
  }
  progress prog{c.bytes, 0, c.bytes > (std::uint64_t{100} << 20)};
  std::size_t k = 0;  // index into `which`
  for (std::size_t i = 0; i < c.items.size(); ++i) {
    auto& it = c.items[i];
    const auto& f = *c.shards[it.shard];
    const auto& e = *it.entry;
    const auto bytes = f.bytes(e);
    if (!it.selected) {
      if (write) writers[it.shard]->write(bytes);
      f.release(e);
      prog.step(e.bytes());
      continue;
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto* out = write ? writers[it.shard].get() : nullptr;
    masked_counts mc;
    if (streams_elements(o) && !global) {
      mc = visit_rule(o.rule, [&](auto tag) {
        using S = std::remove_cvref_t<decltype(tag)>;
        const S rule = spruce::amount_rule<S>::make(it.amount.value_or(spruce::amount(0.0)), e.elements(), e.name);
        return element_prune(o, out, e.dtype, bytes, e.elements(), rule, e.name);
      });
    } else if (o.gran.kind == gran_kind::n_m) {
      mc = e.dtype == dtype::f64 ? n_m_blocks<double>(o, f, e, acts.get(), out) : n_m_blocks<float>(o, f, e, acts.get(), out);
    } else {
      // Per tensor, F64 is scored in double and the rest in float; global scope has one type.
      const spruce::mask m = (e.dtype == dtype::f64 && !global) ? one_mask<double>(o, f, it, acts.get(), nullptr, k)
                                                                : one_mask<T>(o, f, it, acts.get(), global ? &*global : nullptr, k);
      mc = write_masked(out, bytes, spruce::io::dtype_size(e.dtype), m);
    }
    const std::size_t n = e.elements();
    it.before = n ? static_cast<double>(mc.zeros_before) / static_cast<double>(n) : 0.0;
    it.after = n ? 1.0 - static_cast<double>(mc.nonzero_after) / static_cast<double>(n) : 0.0;
    it.kept = mc.kept;
    it.pruned = true;
    f.release(e);
    it.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    prog.step(e.bytes());
    ++k;
  }
  prog.finish();
  if (write) {
    std::string index_text;
    if (c.sharded) index_text = c.index.dump(2) + "\n";
    for (auto& wr : writers) wr->commit();
    if (c.sharded) spruce::io::write_file_atomically(out_index, index_text, "the output index");
  }
  return exit_ok;
}

std::vector<std::vector<std::string>> report_rows(const checkpoint& c) {
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"tensor", "dtype", "shape", "action", "sparsity_before", "sparsity_after", "kept", "ms"});
  for (const auto& it : c.items) {
    const auto& e = *it.entry;
    std::string action = it.pruned ? "pruned" : (it.skip_reason.empty() ? "kept" : it.skip_reason);
    rows.push_back({e.name, std::string(spruce::io::dtype_name(e.dtype)), shape_text(e.shape), action,
                    it.pruned ? fmt(it.before) : "", it.pruned ? fmt(it.after) : "",
                    it.pruned ? std::to_string(it.kept) : "", it.pruned ? fmt(it.ms, 1) : ""});
  }
  return rows;
}

int cmd_prune(const options& o) {
  checkpoint c = open_checkpoint(o.inputs);
  select_tensors(c, o);
  bool any64 = false, any32 = false;
  for (const auto& it : c.items)
    if (it.selected) (it.entry->dtype == dtype::f64 ? any64 : any32) = true;
  if (any64 && any32 && o.global)
    throw error("--scope global over F64 and narrower tensors at once: scores of F64 are doubles and of the others "
                "floats, so they share no order; prune them in separate runs (--include / --exclude)");
  const int rc = any64 && !any32 ? prune_as<double>(o, c) : prune_as<float>(o, c);
  auto rows = report_rows(c);
  std::size_t total = 0, pruned = 0, kept = 0;
  for (const auto& it : c.items)
    if (it.pruned) ++pruned, total += it.entry->elements(), kept += it.kept;
  if (!o.quiet) {
    print_table(rows);
    std::cout << pruned << " of " << c.items.size() << " tensors pruned; " << kept << " of " << total
              << " weights kept" << (o.dry_run ? " (dry run: nothing written)" : "") << '\n';
  }
  if (!o.report_csv.empty()) {
    std::string csv;
    for (const auto& r : rows) {
      for (std::size_t i = 0; i < r.size(); ++i) {
        if (i) csv += ',';
        csv += spruce::io::csv_field(r[i]);
      }
      csv += '\n';
    }
    spruce::io::write_file_atomically(o.report_csv, csv, "the report");
  }
  return rc;
}

// The first N:M pattern (1:4, 2:4, 4:8, or only `only`) that the tensor's nonzeros follow
// along its input axis, or "-"; the nonzero mask is filled on every core.
std::string fitting_pattern(const input_file& f, const safetensors_entry& e, std::optional<gran_opt> only) {
  if (!spruce::io::is_prunable(e.dtype) || e.shape.size() < 2 || e.elements() == 0) return "-";
  const auto b = f.bytes(e);
  spruce::byte_buffer nz(e.elements());
  spruce::parallel_chunks(nz.size(), [&](std::size_t, std::size_t, std::size_t lo, std::size_t hi) {
    for (std::size_t i = lo; i < hi; ++i) nz[i] = spruce::io::load_element<double>(e.dtype, b.data(), i) != 0.0;
  });
  const spruce::mask m = spruce::mask::adopt(std::span<const std::size_t>(e.shape), std::move(nz));
  std::vector<std::pair<std::size_t, std::size_t>> pats = {{1, 4}, {2, 4}, {4, 8}};
  if (only) pats = {{only->a, only->b}};
  for (auto [n, mm] : pats)
    if (e.shape[1] % mm == 0 && spruce::is_n_m(m, spruce::granularity::n_m_pattern{n, mm, false}))
      return std::to_string(n) + ":" + std::to_string(mm);
  return "-";
}

int cmd_inspect(const options& o) {
  checkpoint c = open_checkpoint(o.inputs);
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"tensor", "dtype", "shape", "bytes", "sparsity", "n:m"});
  std::size_t zeros = 0, floats = 0;
  for (const auto& it : c.items) {
    const auto& f = *c.shards[it.shard];
    const auto& e = *it.entry;
    std::string sp = "-";
    if (spruce::io::is_prunable(e.dtype)) {
      const std::size_t z = count_zeros(f, e);
      zeros += z;
      floats += e.elements();
      sp = fmt(e.elements() ? static_cast<double>(z) / static_cast<double>(e.elements()) : 0.0);
    }
    rows.push_back({e.name, std::string(spruce::io::dtype_name(e.dtype)), shape_text(e.shape), std::to_string(e.bytes()),
                    sp, fitting_pattern(f, e, o.pattern)});
    f.release(e);
  }
  print_table(rows);
  std::cout << c.items.size() << " tensors in " << c.shards.size() << " file(s), " << c.bytes << " bytes; "
            << "floating elements " << floats << ", zeros " << zeros << " (sparsity "
            << fmt(floats ? static_cast<double>(zeros) / static_cast<double>(floats) : 0.0) << ")\n";
  for (const auto& [k, v] : c.shards.front()->metadata()) std::cout << "metadata " << k << " = " << v << '\n';
  return exit_ok;
}

int cmd_verify(const options& o) {
  checkpoint c = open_checkpoint(o.inputs);
  select_tensors(c, o);
  std::vector<std::string> bad;
  std::size_t zeros = 0, total = 0, checked = 0;
  for (const auto& it : c.items) {
    if (!it.selected) continue;
    ++checked;
    const auto& f = *c.shards[it.shard];
    const auto& e = *it.entry;
    if (o.pattern) {
      if (e.shape[1] % o.pattern->b != 0)
        bad.push_back(e.name + " (input axis " + std::to_string(e.shape[1]) + " is not a multiple of " +
                      std::to_string(o.pattern->b) + ")");
      else if (fitting_pattern(f, e, o.pattern) == "-")
        bad.push_back(e.name + " (a group of " + std::to_string(o.pattern->b) + " keeps more than " +
                      std::to_string(o.pattern->a) + ")");
    }
    const std::size_t z = count_zeros(f, e);
    zeros += z;
    total += e.elements();
    if (o.sparsity && static_cast<double>(z) < spruce::round_half_even(*o.sparsity * static_cast<double>(e.elements())) && !o.global)
      bad.push_back(e.name + " (sparsity " + fmt(e.elements() ? static_cast<double>(z) / static_cast<double>(e.elements()) : 0.0) +
                    " < " + spruce::detail::shortest_decimal(*o.sparsity) + ")");
    f.release(e);
  }
  if (o.sparsity && o.global && static_cast<double>(zeros) < spruce::round_half_even(*o.sparsity * static_cast<double>(total)))
    bad.push_back("the selected tensors together (sparsity " + fmt(total ? static_cast<double>(zeros) / static_cast<double>(total) : 0.0) +
                  " < " + spruce::detail::shortest_decimal(*o.sparsity) + ")");
  if (checked == 0) {
    std::cerr << "spruce-prune verify: no tensor of '" << o.input << "' is selected; check --include / --exclude\n";
    return exit_verify_failed;
  }
  if (bad.empty()) {
    std::cout << "ok: " << checked << " tensors verified\n";
    return exit_ok;
  }
  std::cout << bad.size() << " of " << checked << " tensors fail:\n";
  for (const auto& b : bad) std::cout << "  " << b << '\n';
  return exit_verify_failed;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const options o = parse_args(argc, argv);
    if (o.command == "help") {
      std::cout << help_text;
      return exit_ok;
    }
    if (o.command == "version") {
      std::cout << "spruce-prune " << SPRUCE_VERSION_MAJOR << '.' << SPRUCE_VERSION_MINOR << '.' << SPRUCE_VERSION_PATCH << '\n';
      return exit_ok;
    }
    if (o.command == "prune") return cmd_prune(o);
    if (o.command == "inspect") return cmd_inspect(o);
    return cmd_verify(o);
  } catch (const usage_error& e) {
    std::cerr << "spruce-prune: " << e.what() << "\n(see spruce-prune --help)\n";
    return exit_usage;
  } catch (const spruce::error& e) {
    std::cerr << "spruce-prune: " << e.what() << '\n';
    return exit_error;
  } catch (const std::exception& e) {
    std::cerr << "spruce-prune: " << e.what() << '\n';
    return exit_error;
  }
}
