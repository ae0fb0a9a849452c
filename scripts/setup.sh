#!/usr/bin/env bash
# Everything a fresh machine needs: Debian packages, Python packages, a release build.
# Idempotent and quick when all is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
APT_PACKAGES=(libopenblas-dev pkg-config python3-dev)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! "$PYTHON" -c "import numpy, pytest, tqdm, hypothesis, sklearn, dask, distributed, matplotlib, threadpoolctl, auditwheel, sphinx, numpydoc, myst_parser, hawkmoth, clang.cindex" 2>/dev/null; then
  echo "setup: installing Python packages"
  "$PYTHON" -m pip install -q --disable-pip-version-check -r python/requirements-dev.txt
fi

swift build -c release -Xswiftc -static-stdlib 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' || true
test -f .build/release/libgmmkernels.so
