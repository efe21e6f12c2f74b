#!/usr/bin/env bash
# Builds spruce and runs its test suite; `.ci/run` calls this. From any directory:
#
#   scripts/test.sh [ctest args...]     e.g. scripts/test.sh -R core
#
#  1. scripts/setup.sh installs any missing Debian packages;
#  2. build/release: Release build of tests and examples, `ctest` (all labels);
#  3. build/asan: RelWithDebInfo at -O0 -g1 (the whole sanitizer build took about 30% less
#     CPU time than at -O1: 1144 s against 1624 s, measured on a loaded machine; line tables:
#     sanitizer reports keep file:line, the build skips full debug info) with
#     AddressSanitizer + UBSan (SPRUCE_SANITIZE); the targets whose tests run real work
#     (training library, lab, large selections, sparse products) at -O1
#     (SPRUCE_SANITIZE_HOT_FLAGS, cmake/spruce_project_options.cmake);
#     examples included except the compile-time policy variants, no nvcc programs (the
#     release pass builds and runs both); `ctest -LE "large|downstream|slow|headers|nvcc"`
#     (the header and nvcc checks do not change under sanitizers);
#  4. build/fuzz: the safetensors and .npy readers' libFuzzer harnesses (fuzz/run.sh, clang
#     with ASan + UBSan), both at once for SPRUCE_FUZZ_SECONDS each.
# Extra arguments go to both ctest runs. Environment:
#   SPRUCE_SKIP_ASAN=1   skip step 3 (quick local runs; CI runs everything)
#   SPRUCE_JOBS=N        build/test parallelism (default: nproc)
#   SPRUCE_FUZZ_SECONDS=N  seconds per libFuzzer harness in the fuzz pass (default 60)
#   SPRUCE_SKIP_FUZZ=1   skip the fuzz pass
# Exits non-zero when a build or any test fails; the last line is
# "summary: N passed, N failed[, N skipped]" over all passes (a fuzz harness counts as one test).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
jobs=${SPRUCE_JOBS:-$(nproc 2>/dev/null || echo 2)}
t_start=$SECONDS

bash scripts/setup.sh

passed=0 failed=0 skipped=0
report=()   # one line per pass for the closing summary
status=0

# run_pass <name> <build dir> <ctest filter args...> -- <cmake configure args...>
# Returns 0 when everything passed, 1 when tests failed, 2 when configure/build failed.
run_pass() {
  local name=$1 dir=$2
  shift 2
  local ctest_filter=()
  while (($#)) && [[ $1 != -- ]]; do ctest_filter+=("$1"); shift; done
  shift  # the --
  local t0=$SECONDS

  echo "==== [$name] configure $dir"
  if ! cmake -S . -B "$dir" "$@"; then
    report+=("$name: configure FAILED")
    return 2
  fi
  echo "==== [$name] build ($jobs jobs)"
  if ! cmake --build "$dir" --parallel "$jobs"; then
    report+=("$name: build FAILED after $((SECONDS - t0))s")
    return 2
  fi

  echo "==== [$name] ctest${ctest_filter[*]:+ ${ctest_filter[*]}}${ctest_args[*]:+ ${ctest_args[*]}}"
  local log="$dir/test.sh-ctest.log" rc=0
  ctest --test-dir "$dir" --output-on-failure --no-tests=error --timeout 600 \
        --parallel "$jobs" "${ctest_filter[@]}" "${ctest_args[@]}" 2>&1 | tee "$log" ||
    rc=$?  # pipefail: ctest's status

  # "100% tests passed, 0 tests failed out of 42"; skipped tests count as passed there.
  local line total=0 nfail=0 nskip
  line=$(grep -E '[0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
  if [[ $line =~ ([0-9]+)\ tests?\ failed\ out\ of\ ([0-9]+) ]]; then
    nfail=${BASH_REMATCH[1]} total=${BASH_REMATCH[2]}
  elif ((rc != 0)); then
    nfail=1   # ctest failed before running anything (e.g. no tests matched)
  fi
  nskip=$(grep -cE '\((Skipped|Disabled)\)$' "$log" || true)
  local npass=$((total - nfail - nskip))
  ((npass >= 0)) || npass=0
  passed=$((passed + npass)) failed=$((failed + nfail)) skipped=$((skipped + nskip))
  local what="$npass/$total passed"
  ((nskip == 0)) || what+=", $nskip skipped"
  ((nfail == 0)) || what+=", $nfail FAILED"
  report+=("$name: $what in $((SECONDS - t0))s")
  ((rc == 0 && nfail == 0)) || return 1
}

ctest_args=("$@")

finish() {
  echo
  echo "==== test.sh"
  local r
  for r in "${report[@]}"; do echo "  $r"; done
  echo "  total wall time $((SECONDS - t_start))s"
  local s="summary: $passed passed, $failed failed"
  ((skipped == 0)) || s+=", $skipped skipped"
  echo "$s"
  exit "$status"
}

# Release: everything, downstream-consumer tests included.
rc=0
# The CUDA test program is compiled for one architecture here (a compile check on machines
# without a GPU); the project's default is 80;90. SPRUCE_CUDA_ARCHITECTURES overrides it.
run_pass release build/release -- \
    -DCMAKE_BUILD_TYPE=Release -DSPRUCE_BUILD_TESTS=ON -DSPRUCE_BUILD_EXAMPLES=ON \
    -DSPRUCE_SANITIZE=OFF "-DCMAKE_CUDA_ARCHITECTURES=${SPRUCE_CUDA_ARCHITECTURES:-90}" || rc=$?
if ((rc != 0)); then
  status=1
  # Code that does not build will not build with sanitizers either: stop here. Failing
  # tests still get the sanitizer pass, which often says why.
  if ((rc == 2)); then
    report+=("asan: not run (the release build failed)")
    finish
  fi
fi

if [[ ${SPRUCE_SKIP_ASAN:-0} == 1 ]]; then
  report+=("asan: skipped (SPRUCE_SKIP_ASAN=1)")
else
  # Asan's defaults plus stricter checks; protect_shadow_gap=0 lets the CUDA runtime
  # initialise (and report "no device") under ASan. A caller's settings win.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=0:detect_leaks=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1:protect_shadow_gap=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:report_error_type=1}
  run_pass asan build/asan -LE 'large|downstream|slow|headers|nvcc' -- \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O0 -g1" -DSPRUCE_SANITIZE_HOT_FLAGS=-O1 \
      -DSPRUCE_SANITIZE=ON -DSPRUCE_BUILD_TESTS=ON -DSPRUCE_BUILD_EXAMPLES=ON \
      -DSPRUCE_BUILD_BENCHMARKS=OFF -DSPRUCE_ENABLE_CUDA=OFF -DSPRUCE_BUILD_LAB_VARIANTS=OFF || status=1
fi

# Fuzzing (a third pass): the safetensors and .npy readers under libFuzzer with ASan and
# UBSan (fuzz/run.sh), SPRUCE_FUZZ_SECONDS each (default 60), both at once; any crash, leak
# or sanitizer report fails CI. Each harness counts as one test in the summary.
if [[ ${SPRUCE_SKIP_FUZZ:-0} == 1 ]]; then
  report+=("fuzz: skipped (SPRUCE_SKIP_FUZZ=1)")
else
  t0=$SECONDS
  mkdir -p build/fuzz
  rc=0
  bash fuzz/run.sh build/fuzz 2>&1 | tee build/fuzz/run.log || rc=$?
  nok=$(grep -cE '^fuzz: [a-z]+ ok' build/fuzz/run.log || true)
  nbad=$((2 - nok))
  passed=$((passed + nok)) failed=$((failed + nbad))
  what="$nok/2 passed"
  ((nbad == 0)) || what+=", $nbad FAILED"
  report+=("fuzz: $what in $((SECONDS - t0))s (${SPRUCE_FUZZ_SECONDS:-60}s each)")
  ((rc == 0 && nbad == 0)) || status=1
fi

finish
