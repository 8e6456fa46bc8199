"""
The session behind C{jsonproto send}: requests sent one at a time as they
come (from the command line, a pipe, or a person at a terminal), each reply
and each push printed the moment it arrives.

Standard input is read in a thread of its own, so that the session waits
on the server and on its input at once: a request is sent as soon as its
line is read (C{tail -f log | jsonproto send ...} streams), and a push is
printed while the session waits for the next line.  Only the main thread
touches the connection.
"""

from __future__ import annotations

import json
import queue
import selectors
import socket
import threading
import time
from typing import Any, Callable, TextIO

from jsonproto.client import Client, ProtocolError, ReplyTooLong
from jsonproto.errors import RequestError
from jsonproto.wire import codec

EXIT_OK, EXIT_ERROR_REPLY, EXIT_FAILURE = 0, 1, 2


class CommandError(Exception):
    """
    Something the user must hear about in one line, ending the command.
    """


def parseRequest(text: str, where: str) -> dict[str, Any]:
    """
    One request, as typed.

    @param where: How to name it in an error: C{argument 2}, C{line 7}.
    @raise CommandError: It is not JSON, or not a request.
    """
    try:
        json.loads(text)
    except ValueError as e:
        raise CommandError(f"{where} is not JSON: {e}") from None
    try:
        # Held to the rules the server holds it to: no NaN, no 1e999.
        message = codec.decode(text.encode("utf-8", "surrogatepass"))
    except RequestError as e:
        raise CommandError(f"{where} is not JSON as a request must be: {e}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise CommandError(f"{where} is not a request: it needs to be a JSON object with a string \"type\"")
    if isinstance(message.get("id"), (bool, list, dict)):
        raise CommandError(f"{where} is not a request: its \"id\" must be a string, a number or null")
    return message


class _EndOfInput:
    """
    Where the lines end.
    """


END = _EndOfInput()


class Arguments:
    """
    Requests given on the command line, all at hand.
    """

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self._messages = list(messages)

    def fileno(self) -> None:
        return None

    def want(self) -> None:
        pass

    def take(self) -> dict[str, Any] | str | _EndOfInput | None:
        return self._messages.pop(0) if self._messages else END

    def close(self) -> None:
        pass


class InputLines:
    """
    Lines from standard input, read one at a time in a thread when the
    session asks for one (L{want}), each announced by a byte on a socket
    the session's selector watches (L{fileno}).

    @param prompt: Where to write a prompt before reading each line (a
        terminal's), or L{None}.
    """

    def __init__(self, stdin: TextIO, prompt: TextIO | None = None) -> None:
        self._stdin = stdin
        self._prompt = prompt
        self._lines: queue.SimpleQueue[str | Exception] = queue.SimpleQueue()
        self._wanted = threading.Event()
        self._closed = False
        self._wake, self._waker = socket.socketpair()
        self._thread = threading.Thread(target=self._read, name="jsonproto send: standard input", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        return self._wake.fileno()

    def want(self) -> None:
        """
        Read the next line (once the one before has been taken).
        """
        self._wanted.set()

    def take(self) -> str | _EndOfInput | None:
        """
        The line read, L{END} after the last, or L{None} if none is in yet.

        @raise CommandError: Standard input could not be read.
        """
        try:
            line = self._lines.get_nowait()
        except queue.Empty:
            return None
        # Each line is announced by one byte, sent just after it is queued:
        # take that byte too, so that the selector only wakes for news.
        self._wake.recv(1)
        if isinstance(line, Exception):
            raise CommandError(f"cannot read standard input: {line}")
        return line if line else END

    def close(self) -> None:
        self._closed = True
        self._wanted.set()
        self._wake.close()
        self._waker.close()

    def _read(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._closed:
                return
            try:
                if self._prompt is not None:
                    self._prompt.write("> ")
                    self._prompt.flush()
                line: str | Exception = self._stdin.readline()
            except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
                line = e
            self._lines.put(line)
            try:
                self._waker.send(b"\0")
            except OSError:  # closed: the session has ended
                return
            if not line or isinstance(line, Exception):
                return


class Session:
    """
    One connection's exchange: a request at a time, its reply and any push
    printed as each arrives.

    @param describe: Names the C{n}th line in an error message.
    @param keepGoing: Report a line that is not a request and carry on
        (a person at a terminal) rather than count it as a failure.
    @param oneWay: The server's one-way types: messages of these are sent
        without waiting for a reply (none comes).
    """

    def __init__(
        self,
        client: Client,
        out: TextIO,
        err: TextIO,
        timeout: float,
        describe: Callable[[int], str] = lambda n: f"line {n}",
        keepGoing: bool = False,
        oneWay: frozenset[str] = frozenset(),
    ) -> None:
        self.client = client
        self.oneWay = oneWay
        self.out = out
        self.err = err
        self.timeout = timeout
        self.describe = describe
        self.keepGoing = keepGoing
        self.status = EXIT_OK
        self._deadline: float | None = None
        client.onMessage = self._pushed

    def run(self, source: Arguments | InputLines) -> int:
        """
        Send what C{source} gives until it ends and the last reply is in.

        @raise CommandError: The server could not be talked to.
        """
        lines = 0
        asked = False
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.client.fileno(), selectors.EVENT_READ, "server")
                if isinstance(source, InputLines):
                    selector.register(source, selectors.EVENT_READ, "input")
                while True:
                    if self._deadline is None:
                        if not asked:
                            source.want()
                            asked = True
                        line = source.take()
                        if isinstance(line, _EndOfInput):
                            return self.status
                        if line is not None:
                            asked = False
                            lines += 1
                            self._request(line, lines)
                            continue
                    waitFor = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
                    events = selector.select(waitFor)
                    if any(key.data == "server" for key, _ in events):
                        self._poll()
                    self._takeReply()
                    if self._deadline is not None and time.monotonic() >= self._deadline:
                        raise CommandError(f"no reply within {self.timeout:g} seconds")
        finally:
            source.close()

    def _request(self, line: dict[str, Any] | str, number: int) -> None:
        if isinstance(line, str):
            if not line.strip():
                return
            try:
                message = parseRequest(line, self.describe(number))
            except CommandError as e:
                self.err.write(f"jsonproto: {e}\n")
                self.err.flush()
                if not self.keepGoing:
                    self.status = max(self.status, EXIT_FAILURE)
                return
        else:
            message = line
        oneWay = message["type"] in self.oneWay
        try:
            if oneWay:
                self.client.notify(message)
            else:
                self.client.send(message)
        except TimeoutError:
            raise CommandError(f"could not send within {self.timeout:g} seconds: the server is not reading") from None
        except (ConnectionError, ProtocolError) as e:
            raise CommandError(str(e)) from None
        if not oneWay:
            self._deadline = time.monotonic() + self.timeout

    def _poll(self) -> None:
        try:
            self.client.poll()
        except ReplyTooLong as e:
            self._takeReply()
            raise CommandError(
                f"the server sent a message longer than {e.limit:,} bytes; give a larger --max-reply-size to take it"
            ) from None
        except (ConnectionError, ProtocolError) as e:
            self._takeReply()
            raise CommandError(str(e)) from None

    def _takeReply(self) -> bool:
        """
        Print the reply to the request in flight, if it has come.
        """
        if not self.client.replyReady:
            return False
        reply = self.client.receive()
        self._deadline = None
        self._print(reply)
        if reply.get("status") != "OK":
            self.status = max(self.status, EXIT_ERROR_REPLY)
        return True

    def _pushed(self, message: Any) -> None:
        # A reply read before this push, in the same read, is printed first.
        self._takeReply()
        self._print(message)

    def _print(self, message: Any) -> None:
        self.out.write(json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n")
        self.out.flush()
