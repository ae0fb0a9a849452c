#!/usr/bin/env bash
# The wheel on a machine without OpenBLAS and Swift: builds it (scripts/wheel.sh), installs it
# into a fresh virtual environment, and runs scripts/wheel_check.py there inside a private mount
# namespace where the system's OpenBLAS, its Fortran runtime and the Swift toolchain are hidden
# (empty directories and /dev/null bound over them). Needs root, for unshare -m.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ "$(id -u)" -ne 0 ]; then
  echo "wheel-test: needs root (unshare -m and bind mounts)" >&2
  exit 1
fi
bash scripts/wheel.sh
wheels=(dist/gmmkernels-*.whl)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check "${wheels[0]}"

# What to hide: the toolchain's usr/ folder, the folder of the OpenBLAS the library was linked
# with, and the Fortran runtime's files.
# The linker cache is read once: awk stopping at its first match would leave ldconfig writing
# into a closed pipe (SIGPIPE, exit 141 under pipefail) when the cache is larger than a pipe.
cache=$(ldconfig -p)
hide_dirs=()
if swift=$(command -v swift); then
  hide_dirs+=("$(dirname "$(dirname "$(readlink -f "$swift")")")")
fi
hide_dirs+=("$(dirname "$(readlink -f "$(awk '/libopenblas\.so\.0 .*x86-64/ {print $NF; exit}' <<<"$cache")")")")
hide_files=()
for lib in libgfortran.so.5 libquadmath.so.0; do
  path=$(awk -v lib="$lib" '$1 == lib && /x86-64/ {print $NF; exit}' <<<"$cache")
  [ -n "$path" ] && hide_files+=("$(readlink -f "$path")")
done
echo "wheel-test: hiding ${hide_dirs[*]} ${hide_files[*]}"

mkdir "$work/empty"
unshare -m bash -euc '
  work=$1; shift
  while [ "$1" != -- ]; do mount --bind "$work/empty" "$1"; shift; done; shift
  for f in "$@"; do mount --bind /dev/null "$f"; done
  cd "$work"
  PATH="$work/venv/bin:/usr/bin:/bin" "$work/venv/bin/python" "$0"
' "$PWD/scripts/wheel_check.py" "$work" "${hide_dirs[@]}" -- "${hide_files[@]}"
