#include "train/checkpoint.hpp"

#include <cstring>
#include <limits>
#include <set>
#include <string_view>
#include <system_error>

#include "spruce/core/error.hpp"
#include "spruce/core/shape.hpp"
#include "spruce/io/safetensors.hpp"

// The format's rules (header length, JSON, dtypes, offsets tiling the data section) are
// enforced by spruce/io/safetensors.hpp, the one reader and writer the library ships; this
// file adds only what a training checkpoint means: F32 tensors matched to a model's views.

namespace train {
namespace {

static_assert(sizeof(float) == 4 && std::numeric_limits<float>::is_iec559, "F32 must be IEEE binary32");

using spruce::error;
using spruce::io::safetensors_entry;

std::string quoted(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

void require_f32(const std::filesystem::path& path, const safetensors_entry& e) {
  if (e.dtype != spruce::io::dtype::f32)
    throw error("safetensors file " + quoted(path) + ": tensor '" + e.name + "' has dtype " +
                std::string(spruce::io::dtype_name(e.dtype)) +
                "; spruce_train reads F32 only (save it as float32, e.g. tensor.float() in PyTorch)");
}

bool same_shape(const spruce::tensor_ref<float>& v, const std::vector<std::size_t>& s) {
  if (v.rank() != s.size()) return false;
  for (std::size_t r = 0; r < s.size(); ++r)
    if (v.extent(r) != s[r]) return false;
  return true;
}

}  // namespace

void save_safetensors(const std::filesystem::path& path, const std::vector<spruce::named_tensor<float>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Validate everything before touching the file system.
  if (path.empty() || !path.has_filename())
    throw error("save_safetensors: " + quoted(path) + " is not a file path; pass e.g. 'model.safetensors'");
  std::vector<spruce::io::safetensors_spec> specs;
  specs.reserve(tensors.size());
  for (const auto& t : tensors) {
    if (t.name.empty()) throw error("save_safetensors: a tensor has an empty name; give every tensor its parameter name");
    if (t.view.rank() == 0)
      throw error("save_safetensors: tensor '" + t.name +
                  "' has an empty (default-constructed) view; bind it to its storage");
    if (!t.view.is_contiguous())
      throw error("save_safetensors: tensor '" + t.name + "' is a strided view; save a contiguous copy of it");
    specs.push_back({t.name, spruce::io::dtype::f32, {t.view.shape().begin(), t.view.shape().end()}});
  }
  try {
    (void)spruce::io::safetensors_header_bytes(specs, metadata);  // names and size, before any directory
  } catch (const error& e) {
    throw error("save_safetensors: " + std::string(e.what()).substr(std::string_view("safetensors writer: ").size()));
  }
  const std::filesystem::path parent = path.parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec)
      throw error("save_safetensors: cannot create directory " + quoted(parent) + ": " + ec.message() +
                  "; choose a writable location");
  }
  // The header, then each tensor's bytes straight from its storage (never copied).
  spruce::io::safetensors_writer out(path, specs, metadata, "the checkpoint");
  for (const auto& t : tensors)
    if (t.view.size() > 0)
      out.write(std::string_view(reinterpret_cast<const char*>(t.view.data()), t.view.size() * sizeof(float)));
  out.commit();
}

void load_safetensors(const std::filesystem::path& path, const std::vector<spruce::named_tensor<float>>& into) {
  std::map<std::string, const spruce::named_tensor<float>*> wanted;
  for (const auto& t : into) {
    if (!wanted.emplace(t.name, &t).second)
      throw error("load_safetensors: tensor '" + t.name + "' is listed twice in the destination; names must be unique");
    if (t.view.rank() == 0)
      throw error("load_safetensors: destination '" + t.name +
                  "' has an empty (default-constructed) view; bind it to its storage");
  }

  const spruce::io::safetensors_file f(path);

  // Collect every problem, so one message tells the whole story.
  std::string problems;
  auto add = [&](const std::string& p) { problems.append(problems.empty() ? "" : "; ").append(p); };
  std::set<std::string> found;
  for (const safetensors_entry& e : f.tensors()) {
    const auto it = wanted.find(e.name);
    if (it == wanted.end()) {
      add("the file has tensor '" + e.name + "' " + spruce::shape_string(e.shape) + " that the model lacks");
      continue;
    }
    found.insert(e.name);
    const auto& view = it->second->view;
    if (e.dtype != spruce::io::dtype::f32)
      add("'" + e.name + "' has dtype " + std::string(spruce::io::dtype_name(e.dtype)) + ", not F32");
    else if (!same_shape(view, e.shape))
      add("'" + e.name + "' has shape " + spruce::shape_string(e.shape) + " in the file but " +
          spruce::shape_string(view.shape()) + " in the model");
  }
  for (const auto& [name, t] : wanted)
    if (!found.count(name)) add("'" + name + "' " + spruce::shape_string(t->view.shape()) + " is missing from the file");
  if (!problems.empty())
    throw error("load_safetensors: " + quoted(path) + " does not match the model: " + problems +
                "; load a checkpoint saved from the same architecture");

  for (const safetensors_entry& e : f.tensors()) {
    const auto& view = wanted.at(e.name)->view;
    const std::byte* src = f.bytes(e).data();
    if (view.is_contiguous()) {
      if (view.size() > 0) std::memcpy(view.data(), src, view.size() * sizeof(float));
    } else {
      for (std::size_t i = 0; i < view.size(); ++i)
        std::memcpy(view.data() + view.offset_of(i), src + i * sizeof(float), sizeof(float));
    }
  }
}

std::map<std::string, std::string> read_safetensors_metadata(const std::filesystem::path& path) {
  return spruce::io::safetensors_file(path).metadata();
}

std::vector<stored_tensor> read_safetensors(const std::filesystem::path& path) {
  const spruce::io::safetensors_file f(path);
  for (const safetensors_entry& e : f.tensors()) require_f32(path, e);
  std::vector<stored_tensor> out;
  out.reserve(f.tensors().size());
  for (const safetensors_entry& e : f.tensors()) {
    stored_tensor t;
    t.name = e.name;
    t.dtype = std::string(spruce::io::dtype_name(e.dtype));
    for (const std::size_t d : e.shape) {
      if (d > static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max()))
        throw error("safetensors file " + quoted(path) + ": tensor '" + e.name +
                    "' has a dimension too large; the file is corrupt");
      t.shape.push_back(static_cast<std::int64_t>(d));
    }
    t.data.resize(e.elements());
    f.read_values(e, std::span<float>(t.data));
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace train
