#pragma once
// Pruning schedules: *when* to prune and to what sparsity. The step window, frequency and
// polynomial ramp follow TensorFlow Model Optimization (PruningSchedule, PolynomialDecay,
// ConstantSparsity) value for value; AGP is Zhu & Gupta's cubic ramp; iterative_geometric
// prunes the same fraction of the survivors in each of n prune/fine-tune rounds.
//
// The umbrella: the base (concept and shared checks, schedule/base.hpp) and the four
// policies. No policy includes this header, so the includes form no cycle.

#include "spruce/schedule/base.hpp"
#include "spruce/schedule/constant.hpp"
#include "spruce/schedule/iterative.hpp"
#include "spruce/schedule/one_shot.hpp"
#include "spruce/schedule/polynomial.hpp"
