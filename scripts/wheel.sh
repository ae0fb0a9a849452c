#!/usr/bin/env bash
# `make wheel`: dist/gmmkernels-<version>-py3-none-manylinux_<glibc>_x86_64.whl, a wheel that
# runs where neither OpenBLAS nor Swift is installed. pip builds the library into the package
# (python/setup.py: release, Swift runtime linked statically); auditwheel then copies the
# libraries it links (OpenBLAS, libgfortran, libquadmath) into the wheel, points the library's
# RPATH at them and gives the wheel the manylinux tag this machine's glibc allows.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
"$PYTHON" -m pip wheel --no-deps -q --disable-pip-version-check -w "$raw" ./python
mkdir -p dist
rm -f dist/gmmkernels-*.whl
"$PYTHON" -m auditwheel -v repair --strip -w dist "$raw"/gmmkernels-*.whl 2>&1 | grep -E "^(INFO:auditwheel.main_repair|Fixed-up)" || true
ls dist/gmmkernels-*.whl >/dev/null
for w in dist/gmmkernels-*.whl; do echo "wheel: $w ($(du -k "$w" | cut -f1) KiB)"; done
