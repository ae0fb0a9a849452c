"""Sphinx configuration of gmmkernels' API reference (``make docs``)."""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, ROOT)

import gmmkernels  # noqa: E402  (needs the library: `make docs` builds it first)

project = "gmmkernels"
author = "the gmmkernels developers"
release = version = gmmkernels.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
    "hawkmoth",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_generated"]
root_doc = "index"

# The Python API: numpydoc renders the docstrings; only documented members are listed.
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
autosummary_generate = False

# The C API: hawkmoth reads the documentation comments of the header with libclang.
hawkmoth_root = os.path.join(ROOT, "include")
hawkmoth_clang = ["-I" + os.path.join(ROOT, "include")]

# The user guide is the README itself, read by MyST.
myst_heading_anchors = 3

html_theme = "alabaster"
html_static_path = []


def _draw_benchmark_plots(app):
    """The benchmark's figures, drawn with the benchmark's own plotting code from the results
    it wrote to benchmarks/results/ (no timing happens while the documentation is built)."""
    import json

    from benchmarks import core

    with open(os.path.join(ROOT, "benchmarks", "results", "core-scaling.json")) as f:
        records = json.load(f)["results"]
    out = os.path.join(app.srcdir, "_generated")
    os.makedirs(out, exist_ok=True)
    core.plot([r for r in records if r["kernel"] in core.KERNELS], os.path.join(out, "core-scaling.png"),
              core.KERNELS)


def setup(app):
    app.connect("builder-inited", _draw_benchmark_plots)
