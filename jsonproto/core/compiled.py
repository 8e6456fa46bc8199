"""
Whether this process runs the compiled core.

The pipeline's modules (L{COMPILED}) are plain Python, and the
specification.  Where a C compiler was at hand at install, Cython also
compiled each of them, as it is, into an extension module of the same name
beside its source; Python's import prefers the extension.  Setting
C{JSONPROTO_NO_SPEEDUPS} in the environment makes this process import the
sources instead, to compare the two or to rule the compiled one out.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import Sequence

COMPILED = (
    "jsonproto.wire.framing",
    "jsonproto.wire.codec",
    "jsonproto.core.traffic",
    "jsonproto.core.envelope",
    "jsonproto.core.jsonrpc",
    "jsonproto.dispatch.latency",
    "jsonproto.dispatch.typed",
    "jsonproto.core.output",
    "jsonproto.core.pipeline",
    "jsonproto.core.rpcpipeline",
)
"""
The modules Cython compiles, in the order they depend on each other.
"""

DISABLE = "JSONPROTO_NO_SPEEDUPS"


class SourceOnly(importlib.abc.MetaPathFinder):
    """
    Finds the modules of L{COMPILED} as their Python sources, never as the
    extension modules built from them.
    """

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in COMPILED or path is None:
            return None
        name = fullname.rpartition(".")[2]
        for entry in path:
            source = os.path.join(entry, name + ".py")
            if os.path.exists(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None


if os.environ.get(DISABLE) and not any(isinstance(f, SourceOnly) for f in sys.meta_path):
    sys.meta_path.insert(0, SourceOnly())


def stale() -> list[str]:
    """
    The compiled modules older than their source or its C{.pxd}: built
    before the last edit, so not the twin of the code beside them.  (Run
    C{make}, or C{python setup.py build_ext --inplace}, to rebuild.)
    """
    found = []
    for name in COMPILED:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or spec.origin.endswith(".py"):
            continue
        base = os.path.join(os.path.dirname(spec.origin), name.rpartition(".")[2])
        built = os.path.getmtime(spec.origin)
        if any(os.path.exists(source) and os.path.getmtime(source) > built for source in (base + ".py", base + ".pxd")):
            found.append(name)
    return found


def implementation() -> str:
    """
    C{"compiled"} if this process runs the compiled core, else C{"python"}
    (built without a C compiler, or C{JSONPROTO_NO_SPEEDUPS} set).
    """
    from jsonproto.core import pipeline

    return "python" if (pipeline.__file__ or "").endswith(".py") else "compiled"
