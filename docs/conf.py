"""
Sphinx configuration: the Markdown pages through MyST, and the API
reference from the docstrings (epytext markup, shown as written).
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "jsonproto"
author = "the jsonproto developers"
extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_heading_anchors = 3
exclude_patterns = ["_build"]
html_theme = "alabaster"
autodoc_member_order = "bysource"
# Docstrings are epytext (Twisted's convention): keep them out of
# reStructuredText's way by showing them verbatim.
autodoc_docstring_signature = True


def _verbatim(app, what, name, obj, options, lines):
    if lines:
        lines[:] = ["::", ""] + ["    " + line for line in lines] + [""]


def setup(app):
    app.connect("autodoc-process-docstring", _verbatim)
