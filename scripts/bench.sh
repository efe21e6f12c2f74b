#!/usr/bin/env bash
# Builds spruce's Google Benchmark programs in build/bench (Release) and prints the
# spruce-vs-baseline ratio tables (bench/ratio_table.py), also written to
# build/bench/report.md. From any directory:
#
#   scripts/bench.sh                         every build/bench/bench/bench_* program
#   scripts/bench.sh bench_select ...        only these (built as targets of that name)
#   scripts/bench.sh [names] -- ARGS...      ARGS go to each program, e.g.
#                                            -- --benchmark_filter=select/
# Environment: SPRUCE_BENCH_REPETITIONS (default 5; the tables use the median),
# SPRUCE_JOBS (build parallelism, default nproc), SPRUCE_BENCH_NATIVE=1 (build with
# -march=native, in build/bench-native; the baselines get the same flags).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
reps=${SPRUCE_BENCH_REPETITIONS:-5}
jobs=${SPRUCE_JOBS:-$(nproc 2>/dev/null || echo 2)}
build=build/bench
native=OFF
if [[ ${SPRUCE_BENCH_NATIVE:-0} == 1 ]]; then
  build=build/bench-native native=ON
fi

names=() extra=()
while (($#)); do
  case "$1" in
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) names+=("$1"); shift ;;
  esac
done

bash scripts/setup.sh

if [[ ! -f bench/CMakeLists.txt ]]; then
  echo "bench.sh: bench/CMakeLists.txt does not exist: there are no benchmarks to build yet" >&2
  exit 1
fi

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSPRUCE_BUILD_BENCHMARKS=ON \
      -DSPRUCE_BUILD_TESTS=OFF -DSPRUCE_BUILD_EXAMPLES=OFF -DSPRUCE_SANITIZE=OFF \
      -DSPRUCE_BENCH_NATIVE=$native
if ((${#names[@]})); then
  targets=()
  for n in "${names[@]}"; do targets+=(--target "$n"); done
  cmake --build "$build" --parallel "$jobs" "${targets[@]}"
  bins=()
  for n in "${names[@]}"; do bins+=("$build/bench/$n"); done
else
  cmake --build "$build" --parallel "$jobs"
  bins=()
  for f in "$build"/bench/bench_*; do
    [[ -f $f && -x $f ]] && bins+=("$f")
  done
fi
if ((${#bins[@]} == 0)); then
  echo "bench.sh: no bench_* programs in $build/bench" >&2
  exit 1
fi

mkdir -p "$build/results"
jsons=() failed=()
for bin in "${bins[@]}"; do
  name=$(basename "$bin")
  out="$build/results/$name.json"
  rm -f "$out"
  echo "==== $name ($reps repetitions)"
  if ! "$bin" --benchmark_out="$out" --benchmark_out_format=json \
       --benchmark_repetitions="$reps" --benchmark_display_aggregates_only=true \
       "${extra[@]}"; then
    failed+=("$name")
  fi
  [[ -s $out ]] && jsons+=("$out")
done

echo
status=0
if ((${#jsons[@]})); then
  python3 bench/ratio_table.py -o "$build/report.md" "${jsons[@]}" || status=1
  echo
  echo "bench.sh: tables written to $build/report.md; raw results in $build/results/"
else
  echo "bench.sh: no results to tabulate" >&2
  status=1
fi
if ((${#failed[@]})); then
  echo "bench.sh: FAILED: ${failed[*]}" >&2
  status=1
fi
exit "$status"
