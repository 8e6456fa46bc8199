"""
Helpers for end-to-end tests over real sockets on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from typing import Any, Callable

from twisted.internet import endpoints, protocol, reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IListeningPort

from jsonproto.tools import certs
from jsonproto.daemon.tap import Options, makeService

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Collector(protocol.Protocol):
    """
    A client that sends bytes and collects what comes back until a
    condition holds or the server closes.
    """

    def __init__(self, done: Callable[[bytes], bool]) -> None:
        self.done = done
        self.received = b""
        self.finished: Deferred[bytes] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if not self.finished.called and self.done(self.received):
            self.finished.callback(self.received)

    def connectionLost(self, reason: Any) -> None:
        self.reason = reason
        if not self.finished.called:
            self.finished.callback(self.received)
        self.lost.callback(None)


def lines(count: int) -> Callable[[bytes], bool]:
    """
    A condition: C{count} lines have arrived.
    """
    return lambda data: data.count(b"\n") >= count


@inlineCallbacks
def exchange(description: str, data: bytes, done: Callable[[bytes], bool]) -> Any:
    """
    Connect to a client endpoint, send C{data}, return what came back once
    C{done} says so, and close.
    """
    collector = Collector(done)
    yield endpoints.connectProtocol(endpoints.clientFromString(reactor, description), collector)
    collector.transport.write(data)
    received = yield collector.finished
    collector.transport.loseConnection()
    yield collector.lost
    return received


@inlineCallbacks
def startDaemon(test: Any, *arguments: str) -> Any:
    """
    Build the daemon from command-line arguments through the plugin's
    makeService, start it, stop it when the test ends.

    @return: The service and the ports it listens on, in the order given.
    """
    config = Options()
    config.parseOptions(list(arguments))
    service = makeService(config, reactor)
    service.startService()
    test.addCleanup(service.stopService)
    ports: list[IListeningPort] = []
    for child in service:
        if hasattr(child, "whenListening"):  # a listener, not the channels' service
            ports.append((yield child.whenListening()))
    return service, [p.getHost().port for p in ports]


def writeCertificate(path: str, hostname: str = "localhost") -> None:
    """
    Write a self-signed key and certificate for C{hostname} and 127.0.0.1
    into one PEM file, as C{ssl:...:privateKey=} takes it.
    """
    certs.writeCertificate(path, [hostname, "127.0.0.1"])


def certificateOnly(pem: str, directory: str) -> str:
    """
    Copy the certificate (without the key) of a PEM file into
    C{directory}, as Twisted's C{trustRoots=} wants it; return the directory.
    """
    os.makedirs(directory, exist_ok=True)
    with open(pem, "rb") as f:
        data = f.read()
    start = data.index(b"-----BEGIN CERTIFICATE-----")
    with open(os.path.join(directory, os.path.basename(pem)), "wb") as f:
        f.write(data[start:])
    return directory


def twistd(*arguments: str) -> subprocess.Popen[bytes]:
    """
    Start C{twistd} from this environment, with the checkout importable.

    Its output goes to a temporary file, C{process.logPath}, not a pipe: a
    pipe nobody reads fills up and stops the daemon mid-log.
    """
    env = dict(os.environ, PYTHONPATH=REPO)
    log = tempfile.NamedTemporaryFile(prefix="jsonproto-twistd-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *arguments],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    process.logPath = log.name  # type: ignore[attr-defined]
    return process


def daemonLog(process: subprocess.Popen[bytes]) -> bytes:
    """
    Everything the daemon has logged so far.
    """
    with open(process.logPath, "rb") as f:  # type: ignore[attr-defined]
        return f.read()
