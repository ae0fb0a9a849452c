"""The C contract from C: compile tests/c/abi_check.c against include/gmmkernels.h, link
it with the release library in the repository's .build/release/, run it, and require
exit code 0 (its own checks of results, status codes and messages all passed)."""
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "tests" / "c" / "abi_check.c"
INCLUDE = REPO / "include"
LIBRARY_DIR = REPO / ".build" / "release"
LIBRARY = LIBRARY_DIR / "libgmmkernels.so"


def _compiler():
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_c_program_against_release_library(tmp_path):
    compiler = _compiler()
    if compiler is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH")
    assert LIBRARY.is_file(), (
        "%s is missing: build it with `swift build -c release -Xswiftc -static-stdlib`" % LIBRARY
    )
    program = tmp_path / "abi_check"
    build = subprocess.run(
        [
            compiler, "-std=c99", "-Wall", "-Wextra", "-Werror",
            "-I", str(INCLUDE), str(SOURCE),
            "-L", str(LIBRARY_DIR), "-lgmmkernels", "-Wl,-rpath," + str(LIBRARY_DIR), "-lm",
            "-o", str(program),
        ],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, "compiling abi_check.c failed:\n" + build.stdout + build.stderr
    run = subprocess.run([str(program)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, "abi_check failed (exit %d):\n%s%s" % (run.returncode, run.stdout, run.stderr)
    assert "0 failed" in run.stdout.splitlines()[-1], run.stdout
