#!/usr/bin/env bash
# Installs the Debian packages spruce needs, but only the ones that are missing: when
# everything is present it only asks dpkg and returns in well under a second.
#
#   scripts/setup.sh           build + test dependencies (Fashion-MNIST included: a test
#                              checks the committed checkpoint's accuracy on it)
#   scripts/setup.sh --demo    also gnuplot-nox (the demo's plots)
set -euo pipefail

packages=(build-essential cmake ccache libeigen3-dev libxtensor-dev doctest-dev
          libbenchmark-dev zlib1g-dev nlohmann-json3-dev python3 dataset-fashion-mnist
          clang libclang-rt-14-dev)
demo_packages=(gnuplot-nox)

for arg in "$@"; do
  case "$arg" in
    --demo) packages+=("${demo_packages[@]}") ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (use --demo or --help)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  # "install ok installed" only: a removed package leaves a "deinstall ... config-files" entry.
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "setup.sh: all ${#packages[@]} required packages are present"
  exit 0
fi

if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "setup.sh: missing packages (${missing[*]}) and not root; no sudo to install them" >&2
  exit 1
fi

echo "setup.sh: installing ${missing[*]} ..." >&2
# apt's progress goes to a log that is shown only when something fails.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
       "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "setup.sh: apt-get failed while installing ${missing[*]}" >&2
  exit 1
fi
echo "setup.sh: installed ${missing[*]}"
