"""
The daemon's message types: the seed's, and those of the C{--handlers}
modules, imported as the daemon starts (after its reactor is installed,
so that a module importing C{twisted.internet.reactor} gets that one).
"""

from __future__ import annotations

import importlib
from typing import Callable, NoReturn

from jsonproto.dispatch.dispatcher import Dispatcher
from jsonproto.dispatch.seed import defaultDispatcher


class HandlersFailed(Exception):
    """
    A C{--handlers} module cannot be used; the message is one line naming
    it and saying why.
    """


class ChannelsNotEnabled(AttributeError):
    """
    A handlers module used C{dispatcher.channels} in a daemon started
    without C{--channels}.  An L{AttributeError}, so that C{getattr(...,
    default)} and C{hasattr} find nothing there, as they should.

    @ivar use: What was used: C{"dispatcher.channels.publish"}, say.
    """

    def __init__(self, use: str) -> None:
        super().__init__(f"{use}: the daemon has no channels; start it with --channels")
        self.use = use


class NoChannels:
    """
    C{dispatcher.channels} of a daemon started without C{--channels}: any
    use of it raises L{ChannelsNotEnabled}, whether in C{register} or in
    a handler later, and it is false, for a module that works either way
    (C{if dispatcher.channels: ...}).
    """

    def __bool__(self) -> bool:
        return False

    def __getattr__(self, name: str) -> NoReturn:
        raise ChannelsNotEnabled(f"dispatcher.channels.{name}")

    def __repr__(self) -> str:
        return "<no channels: the daemon was started without --channels>"


def loadDispatcher(
    moduleNames: list[str], seedTypes: bool = True, prepare: Callable[[Dispatcher], None] | None = None
) -> Dispatcher:
    """
    A dispatcher with the seed's types (GREETING and SUM, unless
    C{seedTypes} is false) and those each module's C{register(dispatcher)}
    adds, in order.

    @param prepare: Called with the dispatcher before the modules are
        (C{--channels} adds its types and C{dispatcher.channels} there, for
        the modules to use); without it, C{dispatcher.channels} is a
        L{NoChannels}.

    @raise HandlersFailed: If a module cannot be imported, has no
        C{register}, or its C{register} fails (a type registered twice,
        channels used without C{--channels}).
    """
    dispatcher = defaultDispatcher() if seedTypes else Dispatcher()
    if prepare is not None:
        prepare(dispatcher)
    if dispatcher.channels is None:
        dispatcher.channels = NoChannels()
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
        except ChannelsNotEnabled as e:
            raise HandlersFailed(f"--handlers {name!r} uses {e.use}, which needs --channels") from None
        except Exception as e:
            raise HandlersFailed(f"--handlers {name!r}: register(dispatcher) failed: {type(e).__name__}: {e}") from None
    return dispatcher
