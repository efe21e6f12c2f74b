#pragma once
// The float VGG's fast path (private to the training library): the same network as the
// layer classes compute, in a layout and loop order chosen for speed. See vgg_engine.cpp.

#include <cstddef>
#include <span>

#include "train/layers.hpp"
#include "train/model.hpp"
#include "train/tensor.hpp"

namespace train::detail {

/// One conv -> BN -> ReLU (-> 2x2 max pool) block: the parameters live in the layer
/// objects (the model's named views point there); the engine reads and writes them.
struct engine_block {
  conv2d<float>* conv;
  batchnorm2d<float>* bn;
  bool pool;
};

/// Forward of images (NCHW, n x c x h x w) through the blocks and the mean over H and W:
/// `features` becomes [n, channels, 1, 1]. In training the BN layers normalise with the
/// batch statistics and move their running ones. The caller has validated the shapes.
void engine_forward(vgg_engine& e, std::span<const engine_block> blocks, const float* images,
                    std::size_t n, std::size_t c, std::size_t h, std::size_t w, bool training,
                    tensor<float>& features);

/// Sets every conv and BN gradient from d(loss)/d(features) of the last engine_forward.
void engine_backward(vgg_engine& e, std::span<const engine_block> blocks,
                     const tensor<float>& d_features);

/// True once engine_forward has run (backward needs its activations).
bool engine_ready(const vgg_engine& e) noexcept;

}  // namespace train::detail
