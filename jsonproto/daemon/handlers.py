"""
The daemon's message types: the seed's, and those of the C{--handlers}
modules, imported as the daemon starts (after its reactor is installed,
so that a module importing C{twisted.internet.reactor} gets that one).
"""

from __future__ import annotations

import importlib
from typing import Callable

from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.dispatch.seed import defaultDispatcher


class HandlersFailed(Exception):
    """
    A C{--handlers} module cannot be used; the message is one line naming
    it and saying why.
    """


def loadDispatcher(
    moduleNames: list[str], seedTypes: bool = True, prepare: Callable[[Dispatcher], None] | None = None
) -> Dispatcher:
    """
    A dispatcher with the seed's types (GREETING and SUM, unless
    C{seedTypes} is false) and those each module's C{register(dispatcher)}
    adds, in order.

    @param prepare: Called with the dispatcher before the modules are
        (C{--channels} adds its types and C{dispatcher.channels} there, for
        the modules to use).

    @raise HandlersFailed: If a module cannot be imported, has no
        C{register}, or its C{register} fails (a type registered twice).
    """
    dispatcher = defaultDispatcher() if seedTypes else Dispatcher()
    if prepare is not None:
        prepare(dispatcher)
    for name in moduleNames:
        try:
            module = importlib.import_module(name)
        except Exception as e:
            raise HandlersFailed(
                f"--handlers {name!r} cannot be imported: {type(e).__name__}: {e} "
                "(is the directory holding it on PYTHONPATH?)"
            ) from None
        register = getattr(module, "register", None)
        if not callable(register):
            raise HandlersFailed(f"--handlers {name!r} has no register(dispatcher) function to call")
        try:
            register(dispatcher)
        except Exception as e:
            hint = ""
            if isinstance(e, AttributeError) and dispatcher.channels is None and "'NoneType'" in str(e):
                hint = " (dispatcher.channels is None: does the module need --channels?)"
            raise HandlersFailed(
                f"--handlers {name!r}: register(dispatcher) failed: {type(e).__name__}: {e}{hint}"
            ) from None
    return dispatcher
