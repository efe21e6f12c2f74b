#!/usr/bin/env bash
# Builds the libFuzzer harnesses of the safetensors and .npy readers with clang
# (-fsanitize=fuzzer,address,undefined) and runs both at once for SPRUCE_FUZZ_SECONDS
# (default 60) each, starting from the committed seed corpus (fuzz/corpus/<reader>; new
# inputs go to a scratch directory, never into the checkout). Exits non-zero on any crash,
# leak, timeout or sanitizer report; the reproducer is left in BUILD_DIR (default
# build/fuzz). Usage: fuzz/run.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=$(mkdir -p "${1:-build/fuzz}" && cd "${1:-build/fuzz}" && pwd)
seeds=$(pwd)/fuzz/corpus
seconds=${SPRUCE_FUZZ_SECONDS:-60}
cxx=${SPRUCE_FUZZ_CXX:-clang++}
mkdir -p "$out"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -Iinclude)
for h in safetensors npy; do
  echo "fuzz: building fuzz_$h"
  "$cxx" "${flags[@]}" "fuzz/fuzz_$h.cpp" -o "$out/fuzz_$h"
done
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
pids=()
for h in safetensors npy; do
  work="$out/corpus_$h"
  rm -rf "$work"
  mkdir -p "$work"
  ( cd "$out" && ./"fuzz_$h" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 "corpus_$h" "$seeds/$h" >"fuzz_$h.log" 2>&1 ) &
  pids+=($!)
done
status=0
i=0
for h in safetensors npy; do
  if wait "${pids[$i]}"; then
    echo "fuzz: $h ok ($(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$out/fuzz_$h.log" | grep -Eo '[0-9]+$' || echo '?') runs in ${seconds}s)"
  else
    echo "fuzz: $h FAILED; the log follows (reproducer in $out):"
    tail -n 60 "$out/fuzz_$h.log"
    status=1
  fi
  i=$((i + 1))
done
exit "$status"
