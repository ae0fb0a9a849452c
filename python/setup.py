"""Builds libgmmkernels.so with SwiftPM (release, Swift runtime linked statically) and
puts it inside the package, so an installed gmmkernels needs no Swift toolchain at run
time, only OpenBLAS (Debian: libopenblas0)."""
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

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


setup(cmdclass={"build_py": BuildWithSwift}, distclass=BinaryDistribution)
