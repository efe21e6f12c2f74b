#pragma once
// A pruning policy defined outside spruce: spruce's concepts are the whole contract, so a
// user's criterion drops into pruner<G, C, S> and every scope without touching the library.

#include <algorithm>
#include <cmath>

namespace user {

/// L-infinity importance: a group is as important as its largest |w| (a kernel with one
/// strong tap survives, where L1 would average it away). An element-wise criterion:
/// element = |w|, reduce = max, finish = identity. Since it ranks single weights as |w|
/// does, it declares orders_like_magnitude, and spruce's |w| fast paths apply.
struct linf {
  static constexpr bool needs_grad = false;
  static constexpr bool needs_hessian = false;
  static constexpr bool orders_like_magnitude = true;
  template <class T>
  T element(T w, T, T) const {
    return std::abs(w);
  }
  template <class T>
  T reduce(T a, T b) const {
    return std::max(a, b);
  }
  template <class T>
  T finish(T a) const {
    return a;
  }
  template <class T>
  T identity() const {
    return T(0);
  }
};

}  // namespace user
