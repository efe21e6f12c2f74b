#!/usr/bin/env bash
# The main job: installs what is missing (with the demo's gnuplot-nox and Fashion-MNIST
# packages), builds build/release with the examples and runs the pruning demo,
# examples/00_prune_tensor. Arguments go to the program. From any directory:
#
#   scripts/demo.sh [args...]
# Environment: SPRUCE_JOBS (build parallelism, default nproc).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
jobs=${SPRUCE_JOBS:-$(nproc 2>/dev/null || echo 2)}
demo=build/release/examples/00_prune_tensor/prune_tensor

bash scripts/setup.sh --demo
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DSPRUCE_BUILD_EXAMPLES=ON \
      -DSPRUCE_SANITIZE=OFF
cmake --build build/release --parallel "$jobs" --target prune_tensor
exec "$demo" "$@"
