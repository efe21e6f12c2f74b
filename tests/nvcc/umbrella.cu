// Compiled by nvcc (never run): the umbrella header must compile cleanly in a CUDA
// translation unit under `-Werror all-warnings` (ctest `nvcc:umbrella`).
#include "spruce/spruce.hpp"

int main() { return 0; }
