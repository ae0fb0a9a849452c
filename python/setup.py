"""Builds libgmmkernels.so with SwiftPM (release, Swift runtime linked statically) and
puts it inside the package, so an installed gmmkernels needs no Swift toolchain at run
time, only OpenBLAS (Debian: libopenblas0). `make wheel` then bundles OpenBLAS into the
wheel with auditwheel (scripts/wheel.sh).

The library is loaded with ctypes and uses no Python C API, so one wheel serves every
Python 3: its tag is py3-none-<platform>."""
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LIBRARY = "libgmmkernels.so"


class BuildWithSwift(build_py):
    def run(self):
        if not (ROOT / "Package.swift").is_file():
            raise RuntimeError(
                "gmmkernels: Package.swift not found next to python/ (%s); build from a "
                "checkout of the repository" % ROOT
            )
        subprocess.check_call(
            ["swift", "build", "-c", "release", "-Xswiftc", "-static-stdlib",
             "--package-path", str(ROOT)]
        )
        built = ROOT / ".build" / "release" / LIBRARY
        super().run()
        target = Path(self.build_lib) / "gmmkernels" / LIBRARY
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, target)


class BinaryDistribution(Distribution):
    """The wheel holds a native library: tag it for this platform, not 'any'."""

    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    """Tagged py3-none-<platform>: any Python 3, this platform."""

    def get_tag(self):
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(cmdclass={"build_py": BuildWithSwift, "bdist_wheel": PlatformWheel}, distclass=BinaryDistribution)
