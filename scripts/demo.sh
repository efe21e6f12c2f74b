#!/usr/bin/env bash
# The main job: installs what is missing (with the demo's gnuplot-nox and Fashion-MNIST
# packages), builds build/release with the examples and runs the pruning lab,
# examples/02_prune_lab, from the committed dense checkpoint: every stage, the results
# table and the plots (the default run took 8:32 on the 2-core machine, 2026-12-01; the
# ResNet's slimming stage joins --long). Arguments go to the program
# (`--help` lists them; `--long` is the longer, better run). From any directory:
#
#   scripts/demo.sh [args...]
# The run folder is build/lab-runs/<date>-<time> unless --out DIR is given.
# Environment: SPRUCE_JOBS (build parallelism, default nproc).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
jobs=${SPRUCE_JOBS:-$(nproc 2>/dev/null || echo 2)}
demo=build/release/examples/02_prune_lab/prune_lab

bash scripts/setup.sh --demo
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DSPRUCE_BUILD_EXAMPLES=ON \
      -DSPRUCE_SANITIZE=OFF
cmake --build build/release --parallel "$jobs" --target prune_lab

args=("$@")
has_out=0
for a in "${args[@]}"; do [[ "$a" == "--out" ]] && has_out=1; done
if ((has_out == 0)); then
  mkdir -p build/lab-runs
  args+=(--out "build/lab-runs/$(date +%Y%m%d-%H%M%S)")
fi
exec "$demo" "${args[@]}"
