// The README's quick start: prune an Eigen matrix in place, the MIT lab's way and torch's.
#include <cstdio>

#include <Eigen/Dense>
#include <spruce/eigen.hpp>
#include <spruce/spruce.hpp>

int main() {
  Eigen::MatrixXf w = Eigen::MatrixXf::Random(256, 512);  // a linear layer's weight
  auto view = spruce::make_view(w);                        // adapts, never copies

  // The lab's rule: prune every |w| <= the 70th-percentile magnitude.
  spruce::mask m = spruce::magnitude_prune(view, spruce::selection::threshold{0.7});
  std::printf("threshold: pruned %zu of %zu, sparsity %.4f\n", m.count_pruned(), m.size(),
              spruce::sparsity(view));

  // torch.nn.utils.prune's rule: exactly 1000 more weights, ties by lower index.
  Eigen::MatrixXf v = Eigen::MatrixXf::Random(256, 512);
  spruce::mask e = spruce::magnitude_prune(spruce::make_view(v), spruce::selection::exact(1000));
  std::printf("exact: pruned %zu\n", e.count_pruned());
  return m.count_pruned() == 91750 && e.count_pruned() == 1000 ? 0 : 1;
}
