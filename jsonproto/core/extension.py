"""
Whether this process uses the C extension, C{jsonproto.core._speedups}.

It is used when it was built at install (a C compiler was at hand) and
C{JSONPROTO_NO_SPEEDUPS} is not set in the environment, which switches it
off, for comparing the two or ruling it out.  Each module with a C twin
(L{jsonproto.core.fastpath}, L{jsonproto.wire.framing}, L{jsonproto.core.counters},
L{jsonproto.daemon.epoll}) takes it from here, so all of them decide alike.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

speedups: ModuleType | None = None
"""
C{jsonproto.core._speedups}, or L{None} when this process does without it.
"""

if not os.environ.get("JSONPROTO_NO_SPEEDUPS"):
    try:
        speedups = importlib.import_module("jsonproto.core._speedups")
    except ImportError:  # pragma: no cover - built without a C compiler
        pass
