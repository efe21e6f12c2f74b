#!/usr/bin/env bash
# Kernels on a shared machine (issue 10, item 8). Builds bench/bench_parallel (Release, in
# build/bench) and runs it twice: on a quiet machine, then with one core kept busy by
# another process (a spinning `yes > /dev/null`). Prints, per kernel, the median time with
# 1 and 2 kernel threads and the ratio 2-thread / 1-thread; the target is at most 1.3
# under load. From any directory:
#
#   scripts/bench_loaded.sh [-- extra benchmark args]
# Environment: SPRUCE_BENCH_REPETITIONS (default 7), SPRUCE_JOBS (build parallelism).
# Optional first argument: a prebuilt bench_parallel binary to measure instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
reps=${SPRUCE_BENCH_REPETITIONS:-7}
jobs=${SPRUCE_JOBS:-$(nproc 2>/dev/null || echo 2)}
bin=""
if (($#)) && [[ $1 != -- ]]; then bin=$1; shift; fi
[[ ${1:-} == -- ]] && shift
if [[ -z $bin ]]; then
  bash scripts/setup.sh >/dev/null
  cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DSPRUCE_BUILD_BENCHMARKS=ON \
        -DSPRUCE_BUILD_TESTS=OFF -DSPRUCE_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build build/bench --target bench_parallel --parallel "$jobs" >/dev/null
  bin=build/bench/bench/bench_parallel
fi
out=$(mktemp -d)
trap 'kill "${load_pid:-}" 2>/dev/null || true; rm -rf "$out"' EXIT

extra=("$@")
run() {  # run <json file>
  "$bin" --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true \
         --benchmark_out="$1" --benchmark_out_format=json "${extra[@]}" >/dev/null
}
echo "bench_loaded: quiet run ($reps repetitions)..." >&2
run "$out/quiet.json"
echo "bench_loaded: loaded run (one core busy with another process)..." >&2
yes >/dev/null &
load_pid=$!
sleep 0.5
run "$out/loaded.json"
kill "$load_pid" 2>/dev/null || true
wait "$load_pid" 2>/dev/null || true
load_pid=""

python3 - "$out/quiet.json" "$out/loaded.json" <<'PY'
import json, sys
def medians(path):
    m = {}
    for b in json.load(open(path))["benchmarks"]:
        if b.get("aggregate_name") == "median":
            name = b["run_name"].removesuffix("/real_time")  # e.g. fine_grained_vgg/threads/2
            kernel, t = name.rsplit("/", 1); kernel = kernel.removesuffix("/threads")
            m.setdefault(kernel, {})[int(t)] = b["real_time"]
    return m
q, l = medians(sys.argv[1]), medians(sys.argv[2])
print("| kernel | quiet 1 thread | quiet 2 threads | loaded 1 thread | loaded 2 threads | loaded 2t / 1t |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
worst = 0.0
for k in q:
    r = l[k][2] / l[k][1]
    worst = max(worst, r)
    print(f"| {k} | {q[k][1]:.3f} ms | {q[k][2]:.3f} ms | {l[k][1]:.3f} ms | {l[k][2]:.3f} ms | {r:.2f} |")
print(f"\nworst loaded ratio {worst:.2f} (target <= 1.30)")
PY
