"""
The commands for channels: C{jsonproto subscribe} prints each publication
as one JSON line the moment it arrives (flushed, for pipes), connecting
again and resuming when the connection is lost; C{jsonproto publish}
publishes one value and prints the reply.

What the server sends goes to standard output: C{PUBLICATION} and
C{MISSED} messages, exactly as sent.  What the command does about the
connection (lost, connecting again, a channel resumed, or one that cannot
be and must be resynced) goes to standard error, one line each, so that a
pipe reads only the server's messages.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Callable, TextIO

from jsonproto.channels.names import checkName
from jsonproto.client.common import ReplyTooLong
from jsonproto.client.resume import Missed, Publication, Refused, Resync, SubscribeError
from jsonproto.client.subscriber import Subscriber
from jsonproto.errors import RequestError
from jsonproto.tools.send import EXIT_ERROR_REPLY, EXIT_OK, CommandError

sleep: Callable[[float], None] = time.sleep
"""
How the command waits between attempts to connect (tests replace it).
"""


def channelName(text: str) -> str:
    """
    A channel name, as the server takes it.

    @raise argparse.ArgumentTypeError: It is not one, saying why.
    """
    try:
        return checkName(text)
    except RequestError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a channel name: {e.detail}") from None


def publication(text: str) -> Any:
    """
    The data to publish: any JSON value.

    @raise argparse.ArgumentTypeError: It is not JSON.
    """
    try:
        return json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON: {e}") from None


def _line(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n"


class Follow:
    """
    C{jsonproto subscribe}'s loop: subscribe, then print every event until
    C{count} publications are printed (or for ever).
    """

    def __init__(self, out: TextIO, err: TextIO, count: int | None = None) -> None:
        self.out = out
        self.err = err
        self.count = count
        self.printed = 0

    def run(self, subscriber: Subscriber, channels: list[str]) -> int:
        """
        Subscribe to every channel, then print what comes.

        @return: The exit status: 0 after C{count} publications (or
            Ctrl-C), 1 if the server refused a channel (and no other is
            left).
        @raise CommandError: No reply came to a SUBSCRIBE in time, or the
            server sent a message too long to take.
        """
        try:
            for channel in channels:
                if not self._subscribe(subscriber, channel):
                    return EXIT_ERROR_REPLY
            while self.count is None or self.printed < self.count:
                self._show(subscriber.nextEvent(timeout=None))
                if not subscriber.channels:
                    return EXIT_ERROR_REPLY
        except ReplyTooLong as e:
            raise CommandError(f"the server sent a message longer than {e.limit:,} bytes; give a larger --max-reply-size to take it") from None
        except KeyboardInterrupt:
            # Ctrl-C is how a subscription at a terminal ends.
            pass
        return EXIT_OK

    def _subscribe(self, subscriber: Subscriber, channel: str) -> bool:
        """
        Subscribe to C{channel}: whether the server agreed (if not, why is
        on standard error).
        """
        try:
            subscriber.subscribe(channel)
        except SubscribeError as e:
            hint = " (does the server serve channels?)" if e.reply.get("code") == "unknown_type" else ""
            self.notice(f"{e}{hint}")
            return False
        except TimeoutError:
            raise CommandError(f"no reply to SUBSCRIBE {channel} in time") from None
        return True

    def _show(self, event: Any) -> None:
        if isinstance(event, Publication):
            self._print({"type": "PUBLICATION", "channel": event.channel, "data": event.data, "offset": event.offset, "epoch": event.epoch})
            self.printed += 1
        elif isinstance(event, Missed):
            self._print({"type": "MISSED", "channel": event.channel, "count": event.count})
        elif isinstance(event, Resync):
            self.notice(f"{event.channel} cannot be resumed: {event.reason}; resync: what follows comes after offset {event.offset} of epoch {event.epoch}")
        elif isinstance(event, Refused):
            self.notice(str(SubscribeError(event.channel, event.reply)))

    def _print(self, message: dict[str, Any]) -> None:
        self.out.write(_line(message))
        self.out.flush()

    def notice(self, text: str) -> None:
        """
        One line on standard error.
        """
        self.err.write(f"jsonproto: {text}\n")
        self.err.flush()
