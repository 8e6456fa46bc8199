"""
Sphinx configuration: the Markdown pages through MyST, and the API
reference from the docstrings.

The docstrings are epytext, Twisted's convention.  A small translation
(L{epytextToRest}) turns the parts of it they use into reStructuredText:
C{code}, L{link}, I{italics}, B{bold} and the @-fields.
"""

import os
import re
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "jsonproto"
author = "the jsonproto developers"
extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_heading_anchors = 3
exclude_patterns = ["_build", "_generated"]
html_theme = "alabaster"
autodoc_member_order = "bysource"
autodoc_docstring_signature = True

_MARKUP = re.compile(r"([CLIBU])\{")
_FIELD = re.compile(r"^(\s*)@(param|type|return|returns|rtype|raise|raises|ivar|cvar|var|keyword|see|note)\b\s*([^:]*):(.*)$")
_FIELDS = {"return": "returns", "raise": "raises", "see": "seealso"}


def _inline(text: str) -> str:
    """
    C{...} and the other inline markup, braces inside them balanced.
    """
    out = []
    position = 0
    while (match := _MARKUP.search(text, position)) is not None:
        out.append(text[position : match.start()])
        depth, end = 1, match.end()
        while end < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        if depth:
            # Unbalanced (it goes on past this line): leave it as it is.
            out.append(text[match.start() :])
            return "".join(out)
        body = text[match.end() : end - 1]
        kind = match.group(1)
        if kind == "C":
            out.append(f"``{body}``" if body.strip() else body)
        elif kind == "L":
            out.append(f":py:obj:`{body}`")
        elif kind == "I":
            out.append(f"*{body}*")
        elif kind == "B":
            out.append(f"**{body}**")
        else:
            out.append(body)
        position = end
    out.append(text[position:])
    return "".join(out)


def epytextToRest(lines: list[str]) -> list[str]:
    """
    The docstring C{lines}, epytext, as reStructuredText.
    """
    result = []
    # Inline markup may run over a line break.
    for line in _inline("\n".join(lines)).split("\n"):
        field = _FIELD.match(line)
        if field:
            indent, name, argument, rest = field.groups()
            name = _FIELDS.get(name, name)
            argument = f" {argument.strip()}" if argument.strip() else ""
            line = f"{indent}:{name}{argument}:{rest}"
        result.append(line)
    return result


def _convert(app, what, name, obj, options, lines):
    lines[:] = epytextToRest(lines)


GENERATED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_generated")


def writeSeedSchema(app):
    """
    Write the seed types' AsyncAPI document, as C{jsonproto schema} makes
    it, for schema.md to include: the page shows what this version makes.
    """
    from jsonproto.dispatch.seed import defaultDispatcher
    from jsonproto.tools.schema import describe, write

    os.makedirs(GENERATED, exist_ok=True)
    with open(os.path.join(GENERATED, "seed-asyncapi.json"), "w", encoding="utf-8") as f:
        f.write(write(describe(defaultDispatcher())))


def setup(app):
    app.connect("builder-inited", writeSeedSchema)
    app.connect("autodoc-process-docstring", _convert)
