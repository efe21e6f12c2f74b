#pragma once

// Checkpoints in the safetensors format, so that a model trained here loads in PyTorch
// (`safetensors.torch.load_file`) and back: an 8-byte little-endian header length N, N
// bytes of JSON header
//   {"__metadata__": {"k": "v"}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]},
//   ...}
// padded with spaces to a multiple of 8, then the raw little-endian tensor bytes. Offsets
// are relative to the data section and the tensors tile it exactly (no gaps, no overlaps).
// Every reader validates the whole header against the file before returning anything and
// throws spruce::error on anything it cannot trust.

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "spruce/core/tensor_ref.hpp"

namespace train {

/// Writes `tensors` (F32, in the given order) and `metadata` to `path` atomically: the bytes
/// go to a fresh temporary file in the same directory, which is flushed to disk and then
/// renamed over `path`, so a crash or an error leaves either the old file or the new one,
/// never a mix. The parent directory is created when missing. Throws spruce::error, writing
/// nothing, for an empty, duplicate or reserved (`__metadata__`) name or a view that is not
/// contiguous; on an I/O failure the temporary file is removed and the old file kept.
void save_safetensors(const std::filesystem::path& path,
                      const std::vector<spruce::named_tensor<float>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Reads the tensors of `path` into the views of `into` (strided views are filled element
/// by element). The file must hold exactly these names, each F32 with the view's shape:
/// a missing name, a shape mismatch or a tensor the file has beyond `into` throws
/// spruce::error listing every offending name (with both shapes), and nothing is written
/// to any view unless the whole file has been read and validated.
void load_safetensors(const std::filesystem::path& path,
                      const std::vector<spruce::named_tensor<float>>& into);

/// The `__metadata__` map of `path` (empty when there is none), after validating the
/// header against the file. Works for any dtype.
std::map<std::string, std::string> read_safetensors_metadata(const std::filesystem::path& path);

/// One tensor as stored in a safetensors file.
struct stored_tensor {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::vector<float> data;
};

/// Every tensor of `path`, in data-offset order (the order they were written). Only F32
/// files are supported: a tensor of another dtype throws spruce::error naming it.
std::vector<stored_tensor> read_safetensors(const std::filesystem::path& path);

}  // namespace train
