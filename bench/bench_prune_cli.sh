#!/usr/bin/env bash
# spruce-prune on a 1 GB F32 and a 1 GB BF16 safetensors beside `cp` of the same file:
#
#   bench/bench_prune_cli.sh [DIR] [MB]     (default: a fresh directory under /tmp, 1024 MB)
#   SPRUCE_PRUNE=path/to/spruce-prune       (default: build/cli, then build/release)
#
# Each file holds 64 MiB tensors (F32 [4096, 4096], BF16 [4096, 8192]). The cache is warmed
# by reading the file once, then `cp`, `cp` + `sync FILE`, `prune --sparsity 0.5` (element,
# L1, threshold) and `prune --granularity 2:4` run in turn, three rounds (so load from
# other processes falls on all of them alike), and the fastest wall time of each counts.
# Printed: wall seconds, the ratio to cp (target <= 3) and to cp + fsync (spruce-prune
# fsyncs its output before the rename, cp does not: on this VM's disk the flush of 1 GB
# alone takes about twice cp's time), the peak resident set from /usr/bin/time -v (target <=
# largest tensor + 64 MiB = 128 MiB) and the load average before and after. On a shared,
# busy machine the ratios move by tens of percent from run to run.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$(mktemp -d /tmp/spruce_bench_cli.XXXXXX)}
mb=${2:-1024}
exe=${SPRUCE_PRUNE:-}
if [[ -z $exe ]]; then
  for b in build/cli build/release; do
    [[ -x $root/$b/tools/spruce-prune/spruce-prune ]] && exe=$root/$b/tools/spruce-prune/spruce-prune && break
  done
fi
[[ -x $exe ]] || { echo "bench_prune_cli.sh: build spruce-prune first (cmake --build BUILD --target spruce-prune)" >&2; exit 2; }
mkdir -p "$dir"
echo "spruce-prune: $exe; files in $dir; $(nproc) cores; $(uptime | sed 's/.*load/load/')"

# one CMD...: one run from a fresh output: "<seconds> <peak RSS KiB>"
one() {
  rm -f "$dir/out.safetensors"
  /usr/bin/time -v "$@" >/dev/null 2>"$dir/time.log"
  awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, a, ":"); s = 0; for (i = 1; i <= n; ++i) s = s * 60 + a[i]; print s}
              /Maximum resident set size/ {print $2}' "$dir/time.log" | paste -sd' '
}
# faster A B: the faster of two "<seconds> <KiB>" results (the RSS goes with the time).
faster() { if [[ -z $2 ]] || awk -v a="${1%% *}" -v b="${2%% *}" 'BEGIN {exit !(a < b)}'; then echo "$1"; else echo "$2"; fi; }

printf '\n| input | command | wall s | x cp | x cp+fsync | peak RSS MiB |\n| --- | --- | --- | --- | --- | --- |\n'
for dt in F32 BF16; do
  f=$dir/model_$dt.safetensors
  [[ -e $f ]] || python3 "$root/tests/cli/make_checkpoint.py" big "$f" $((mb << 20)) "$dt"
  cat "$f" >/dev/null  # warm the page cache
  size=$(du -m "$f" | cut -f1)
  # cp and the two prunes alternate, three rounds, so that other processes' load falls on
  # all three alike; the fastest round of each counts.
  best_cp="" best_cps="" best_el="" best_nm=""
  for _ in 1 2 3; do
    best_cp=$(faster "$(one cp "$f" "$dir/out.safetensors")" "$best_cp")
    best_cps=$(faster "$(one sh -c 'cp "$1" "$2" && sync "$2"' cp_fsync "$f" "$dir/out.safetensors")" "$best_cps")
    best_el=$(faster "$(one "$exe" prune "$f" -o "$dir/out.safetensors" -q --sparsity 0.5)" "$best_el")
    best_nm=$(faster "$(one "$exe" prune "$f" -o "$dir/out.safetensors" -q --granularity 2:4)" "$best_nm")
  done
  read -r cp_s cp_kb <<<"$best_cp"
  read -r cps_s _ <<<"$best_cps"
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
  printf '| %s %s MB | cp | %s | 1.00 | %s | %d |\n' "$dt" "$size" "$cp_s" "$(ratio "$cp_s" "$cps_s")" $((cp_kb / 1024))
  printf '| %s %s MB | cp + sync FILE | %s | %s | 1.00 | |\n' "$dt" "$size" "$cps_s" "$(ratio "$cps_s" "$cp_s")"
  for row in "--sparsity 0.5:$best_el" "--granularity 2:4:$best_nm"; do
    args=${row%:*} res=${row##*:}
    read -r s kb <<<"$res"
    printf '| %s %s MB | prune %s | %s | %s | %s | %d |\n' "$dt" "$size" "$args" "$s" "$(ratio "$s" "$cp_s")" "$(ratio "$s" "$cps_s")" $((kb / 1024))
  done
done
echo "load after: $(uptime | sed 's/.*load/load/')"
rm -f "$dir/out.safetensors" "$dir/time.log"
echo
echo "targets: x cp <= 3; peak RSS <= 128 MiB (largest tensor 64 MiB + 64 MiB). Files kept in $dir."
