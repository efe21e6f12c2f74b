#include "train/optim.hpp"

#include <string>
#include <utility>

#include <spruce/core/error.hpp>
#include <spruce/core/shape.hpp>

namespace train {

template <class T>
basic_sgd<T>::basic_sgd(std::vector<spruce::named_tensor<T>> parameters,
                        std::vector<spruce::named_tensor<T>> gradients,
                        const sgd_options& options)
    : options_(options) {
  const auto fail = [](const std::string& what) { throw spruce::error("sgd: " + what); };
  if (!(options.lr >= 0) || !(options.momentum >= 0) || !(options.dampening >= 0) ||
      !(options.weight_decay >= 0))
    fail(std::string("lr ")
             .append(std::to_string(options.lr))
             .append(", momentum ")
             .append(std::to_string(options.momentum))
             .append(", dampening ")
             .append(std::to_string(options.dampening))
             .append(", weight decay ")
             .append(std::to_string(options.weight_decay))
             .append("; none may be negative"));
  if (options.nesterov && (options.momentum <= 0 || options.dampening != 0))
    fail("Nesterov momentum needs momentum > 0 and dampening 0 (as in PyTorch)");
  if (parameters.size() != gradients.size())
    fail(std::to_string(parameters.size())
             .append(" parameters but ")
             .append(std::to_string(gradients.size()))
             .append(" gradients; pass model.parameters() and model.gradients()"));
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    const auto& p = parameters[i];
    const auto& g = gradients[i];
    if (p.name != g.name || !p.view.same_shape(g.view))
      fail(std::string("parameter ")
               .append(std::to_string(i))
               .append(" is '")
               .append(p.name)
               .append("' ")
               .append(spruce::shape_string(p.view.shape()))
               .append(" but its gradient is '")
               .append(g.name)
               .append("' ")
               .append(spruce::shape_string(g.view.shape()))
               .append("; pass the lists in the same order"));
    if (!p.view.is_contiguous() || !g.view.is_contiguous())
      fail(std::string("'").append(p.name).append("' or its gradient is strided; pass contiguous views"));
  }
  params_ = std::move(parameters);
  grads_ = std::move(gradients);
  if (options_.momentum != 0) {
    momentum_.resize(params_.size());
    for (std::size_t i = 0; i < params_.size(); ++i) momentum_[i].resize(params_[i].view.size());
  }
}

template <class T>
void basic_sgd<T>::set_lr(double lr) {
  if (!(lr >= 0))
    throw spruce::error(std::string("sgd: learning rate ")
                            .append(std::to_string(lr))
                            .append(" is negative or NaN; pass lr >= 0"));
  options_.lr = lr;
}

template <class T>
void basic_sgd<T>::step() {
  const T lr = static_cast<T>(options_.lr), mom = static_cast<T>(options_.momentum);
  const T keep = static_cast<T>(1 - options_.dampening);
  const bool first = steps_ == 0;
  for (std::size_t t = 0; t < params_.size(); ++t) {
    T* p = params_[t].view.data();
    const T* g = grads_[t].view.data();
    const std::size_t n = params_[t].view.size();
    const bool decays = options_.decay_vectors || params_[t].view.rank() > 1;
    const T wd = decays ? static_cast<T>(options_.weight_decay) : T(0);
    T* b = momentum_.empty() ? nullptr : momentum_[t].data();
    for (std::size_t i = 0; i < n; ++i) {
      T d = g[i];
      if (wd != T(0)) d += wd * p[i];
      if (b != nullptr) {
        b[i] = first ? d : mom * b[i] + keep * d;
        d = options_.nesterov ? d + mom * b[i] : b[i];
      }
      p[i] -= lr * d;
    }
  }
  ++steps_;
  for (auto& h : hooks_) h(steps_);
}

template class basic_sgd<float>;
template class basic_sgd<double>;

}  // namespace train
