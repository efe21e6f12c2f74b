#!/usr/bin/env bash
# One spruce-prune command-line case (exit codes, bad inputs): run_case.sh CASE EXE
# Every bad input must give a non-zero exit, a message that names the problem, and write
# nothing (no output, no temporary, an existing output untouched). Files are generated
# here with python3's standard library (tests/cli/make_checkpoint.py).
set -uo pipefail
case_name=$1 exe=$(realpath "$2")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
make=(python3 "$here/make_checkpoint.py")
dir=$(mktemp -d "${TMPDIR:-/tmp}/spruce_cli.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir"
"${make[@]}" transformer m.safetensors

fail() { echo "FAIL [$case_name]: $*"; echo "--- output:"; cat out.log 2>/dev/null; exit 1; }

# expect RC PATTERN CMD...: runs CMD, checks the exit code and that PATTERN is in its output.
expect() {
  local want=$1 pattern=$2
  shift 2
  "$@" >out.log 2>&1
  local rc=$?
  ((rc == want)) || fail "exit code $rc, expected $want: $*"
  [[ -z $pattern ]] || grep -qE -- "$pattern" out.log || fail "no '$pattern' in the output of: $*"
}

# bad FILE PATTERN [ARGS]: pruning FILE fails with exit 3 and PATTERN, writing nothing,
# and an existing output survives.
bad() {
  local file=$1 pattern=$2
  shift 2
  echo old >keep.safetensors
  expect 3 "$pattern" "$exe" prune "$file" -o new.safetensors --sparsity 0.5 "$@"
  [[ ! -e new.safetensors ]] || fail "an output was written"
  expect 3 "$pattern" "$exe" prune "$file" -o keep.safetensors --sparsity 0.5 "$@"
  [[ $(cat keep.safetensors) == old ]] || fail "the existing output was changed"
  ! ls | grep -q '\.tmp\.' || fail "a temporary file was left behind"
}

raw() { "${make[@]}" raw "$@"; }
ok='{"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}'

case $case_name in
  help)
    expect 0 "usage:" "$exe" --help
    for flag in --include --exclude --granularity --criterion --activations --rule --sparsity --table --scope \
                --min-sparsity --max-sparsity --dry-run --report inspect verify --pattern "exit codes" "100 MB"; do
      grep -q -- "$flag" out.log || fail "--help does not document $flag"
    done
    expect 0 "spruce-prune [0-9]" "$exe" --version ;;
  usage)
    expect 2 "no command" "$exe"
    expect 2 "unknown option" "$exe" prune m.safetensors -o x --sparsity 0.5 --bogus
    expect 2 "unknown command" "$exe" squash m.safetensors
    expect 2 "needs -o" "$exe" prune m.safetensors --sparsity 0.5
    expect 2 "--sparsity S or --table" "$exe" prune m.safetensors -o x
    expect 2 "in \[0, 1\]" "$exe" prune m.safetensors -o x --sparsity 1.5
    expect 2 "not one of element" "$exe" prune m.safetensors -o x --sparsity 0.5 --granularity blob
    expect 2 "does not form" "$exe" prune m.safetensors -o x --granularity 4:4
    expect 2 "fixes the sparsity" "$exe" prune m.safetensors -o x --granularity 2:4 --sparsity 0.3
    expect 2 "needs --activations" "$exe" prune m.safetensors -o x --sparsity 0.5 --criterion wanda
    expect 2 "add --scope global" "$exe" prune m.safetensors -o x --sparsity 0.5 --max-sparsity 0.9
    expect 2 "verify needs" "$exe" verify m.safetensors
    [[ ! -e x ]] || fail "an output was written" ;;
  truncated)
    head -c -3 m.safetensors >t.safetensors
    bad t.safetensors "truncated" ;;
  header_past_file)
    raw h.safetensors "$ok" 16 --len 100000
    bad h.safetensors "header length field says 100000" ;;
  header_too_large)
    raw h.safetensors "$ok" 16 --len 999999999999
    bad h.safetensors "100 MiB" ;;
  invalid_json)
    raw j.safetensors '{"a.weight":{"dtype":"F32",' 16
    bad j.safetensors "not valid JSON" ;;
  unknown_dtype)
    raw d.safetensors '{"a.weight":{"dtype":"F12","shape":[2,2],"data_offsets":[0,16]}}' 16
    bad d.safetensors "unknown dtype 'F12'" ;;
  overlap)
    raw o.safetensors '{"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b.weight":{"dtype":"F32","shape":[2,1],"data_offsets":[8,16]}}' 16
    bad o.safetensors "overlap" ;;
  out_of_order)
    raw r.safetensors '{"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[16,0]}}' 16
    bad r.safetensors "end before they begin" ;;
  gap)
    raw g.safetensors '{"a.weight":{"dtype":"F32","shape":[2,1],"data_offsets":[8,16]}}' 16
    bad g.safetensors "belong to no tensor" ;;
  size_mismatch)
    raw s.safetensors '{"a.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}}' 16
    bad s.safetensors "24 bytes\) but data_offsets span 16" ;;
  pattern_axis)
    bad m.safetensors "not a multiple of 6" --granularity 2:6 --sparsity 0.6666666666666667 ;;
  table_no_tensor)
    printf 'model.layers.*.mlp.up_proj.weight 0.5\nno.such.tensor 0.3\n' >t.txt
    echo old >keep.safetensors
    expect 3 "line 2: 'no.such.tensor' names no tensor" "$exe" prune m.safetensors -o keep.safetensors --table t.txt
    [[ $(cat keep.safetensors) == old ]] || fail "the existing output was changed" ;;
  table_twice)
    printf 'model.layers.0.* 0.5\n*.q_proj.weight 0.3\n' >t.txt
    expect 3 "selected twice" "$exe" prune m.safetensors -o new.safetensors --table t.txt
    [[ ! -e new.safetensors ]] || fail "an output was written" ;;
  unwritable_output)
    expect 3 "cannot write the pruned checkpoint to 'missing/dir/out.safetensors'.*existing, writable directory" \
      "$exe" prune m.safetensors -o missing/dir/out.safetensors --sparsity 0.5
    [[ ! -e missing ]] || fail "a directory was created" ;;
  nan_weight)
    python3 - <<'PY'
import json, struct
h = json.dumps({"x.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
h += b" " * ((8 - len(h) % 8) % 8)
open("n.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + struct.pack("<4f", 1.0, float("nan"), 2.0, 3.0))
PY
    bad n.safetensors "x.weight.*NaN" ;;
  missing_input)
    bad nope.safetensors "cannot read safetensors file 'nope.safetensors': No such file" ;;
  wanda_missing_norms)
    "${make[@]}" raw a.safetensors '{}' 0
    bad m.safetensors "has no tensor 'model.layers.0.self_attn.q_proj.weight'" --criterion wanda --activations a.safetensors ;;
  dry_run)
    expect 0 "dry run: nothing written" "$exe" prune m.safetensors -o out.safetensors --sparsity 0.5 --dry-run
    [[ ! -e out.safetensors ]] || fail "--dry-run wrote the output" ;;
  verify)
    expect 0 "" "$exe" prune m.safetensors -o p.safetensors --granularity 2:4 --report r.csv
    grep -q '^model.layers.0.mlp.up_proj.weight,F32,"\[32, 16\]",pruned,' r.csv || fail "the CSV report lacks a pruned row"
    expect 0 "ok: 13 tensors" "$exe" verify p.safetensors --pattern 2:4
    expect 0 "ok: " "$exe" verify p.safetensors --sparsity 0.5
    expect 1 "tensors fail" "$exe" verify m.safetensors --pattern 2:4
    expect 1 "up_proj.weight \(sparsity" "$exe" verify m.safetensors --sparsity 0.5
    expect 1 "keeps more than 1" "$exe" verify p.safetensors --pattern 1:4
    expect 0 "2:4" "$exe" inspect p.safetensors ;;
  sharded)
    "${make[@]}" sharded sh
    mkdir out
    expect 0 "" "$exe" prune sh/model.safetensors.index.json -o out --scope global --sparsity 0.5
    [[ -e out/model.safetensors.index.json && -e out/model-00001-of-00002.safetensors && -e out/model-00002-of-00002.safetensors ]] ||
      fail "the shards and the index were not all written"
    expect 0 "ok: " "$exe" verify out/model.safetensors.index.json --sparsity 0.5 --scope global
    rm out/*
    echo '{"weight_map": {"x": "../evil.safetensors"}}' >sh/bad.index.json
    expect 3 "not a plain file name" "$exe" prune sh/bad.index.json -o out --sparsity 0.5
    [[ -z $(ls out) ]] || fail "output written for a bad index" ;;
  *)
    echo "unknown case $case_name"; exit 2 ;;
esac
echo "ok [$case_name]"
