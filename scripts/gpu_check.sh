#!/usr/bin/env bash
# One command for a GPU machine (one GPU, nvcc in /usr/local/cuda, no apt-get, no network):
# builds the CUDA tests and the CUDA benchmark straight with nvcc (no CMake packages are
# needed beyond the CUDA toolkit: the tests use no doctest, the benchmark no Google
# Benchmark), runs the tests (bit-for-bit device vs CPU, including a selection past 2^31
# elements), then prints one table: mask, apply, N:M and select+mask at 1e6, 1e8 and 1e9
# floats on normal(0, 0.02), 80% zeros and all-equal values beside a device-to-device copy
# and cub::DeviceRadixSort (select+mask over one tensor and a global selection over four),
# CSR / block-sparse / N:M compression beside cusparseDenseToSparse, CSR, BSR 4x4 and N:M
# 2:4 SpMM beside cuBLAS FP32 and TF32, and, when cuSPARSELt (header and library) is in
# the CUDA toolkit, 2:4 bf16 at 8192 beside cuBLAS bf16. Stays under 8 minutes (each step
# has its own timeout).
#
#   scripts/gpu_check.sh [--small]      (--small: skip the 1e9 rows)
#   SPRUCE_CUDA_ARCH=sm_90 (default)    the GPU's architecture
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
export PATH=/usr/local/cuda/bin:$PATH
arch=${SPRUCE_CUDA_ARCH:-sm_90}
out=${OUT:-build/gpu_check}
mkdir -p "$out"
t0=$SECONDS
# The test program is one large translation unit (about 2 minutes of one core); the two
# builds run side by side.
build_s=${SPRUCE_GPU_BUILD_TIMEOUT:-300}
flags=(-std=c++20 -O3 "-arch=$arch" --Werror=all-warnings -Iinclude -Xcompiler=-fopenmp)

# cuSPARSELt is optional: linked when both its header and its library are there.
cuda_root=$(dirname "$(dirname "$(command -v nvcc)")")
lt=(-DSPRUCE_HAS_CUSPARSELT=0)
if [[ -e $cuda_root/include/cusparseLt.h ]] && compgen -G "$cuda_root/lib64/libcusparseLt*" > /dev/null; then
  lt=(-lcusparseLt)
fi

echo "==== build ($arch; cuSPARSELt: ${lt[*]})"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true
timeout "$build_s" nvcc "${flags[@]}" tests/cuda/test_cuda.cu -o "$out/test_cuda" -lcusparse &
p1=$!
timeout "$build_s" nvcc "${flags[@]}" bench/cuda/bench_cuda.cu -o "$out/bench_cuda" -lcusparse -lcublas "${lt[@]}" &
p2=$!
wait $p1; b1=$?
wait $p2; b2=$?
echo "build: tests rc=$b1 bench rc=$b2 ($((SECONDS - t0))s)"
((b1 == 0 && b2 == 0)) || exit 2

echo "==== tests"
SPRUCE_CUDA_LARGE=1 timeout 150 "$out/test_cuda"
t=$?
echo "tests rc=$t ($((SECONDS - t0))s)"

echo "==== figures"
timeout $((470 - (SECONDS - t0))) "$out/bench_cuda" "$@" | tee "$out/table.md"
b=${PIPESTATUS[0]}
echo "bench rc=$b, total $((SECONDS - t0))s"
((t == 0 && b == 0))
