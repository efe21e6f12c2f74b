#pragma once
// Model metrics: sparsity and nonzero counts of tensors and tensor sets, parameter counts
// and storage size, and multiply-accumulate counts of convolutions and linear layers, each
// matching the MIT pruning lab's helpers (torchprofile for MACs) number for number.

#include "spruce/metrics/macs.hpp"
#include "spruce/metrics/model.hpp"
#include "spruce/metrics/size.hpp"
#include "spruce/metrics/sparsity.hpp"
