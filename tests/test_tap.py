"""
The twistd plugin: its options, and the daemon they build, over real
sockets on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import struct

from twisted.internet.defer import inlineCallbacks
from twisted.python import usage
from twisted.trial.unittest import SkipTest, TestCase

from typing import Any

from jsonproto.daemon.service import CannotListen, withBacklog
from jsonproto.daemon.tap import DEFAULT_PORT, Options, makeService
from twisted.internet import endpoints, reactor

from tests.e2e import Collector, exchange, lines, startDaemon, writeCertificate
from tests.support import LogCatcher, int32, line, readInt32, readLines

LOCAL = "tcp:0:interface=127.0.0.1"


class OptionsTests(TestCase):
    def parse(self, *arguments: str) -> Options:
        config = Options()
        config.parseOptions(list(arguments))
        return config

    def assertUsageError(self, arguments: list[str], *phrases: str) -> None:
        e = self.assertRaises(usage.UsageError, self.parse, *arguments)
        for phrase in phrases:
            self.assertIn(phrase, str(e))

    def test_defaults(self) -> None:
        """
        With no options: newline JSON on 127.0.0.1:3001, no echo, the
        documented limits.
        """
        config = self.parse()
        self.assertEqual(
            (config["ports"], config["echo"], config["framing"], config["idle-timeout"], config["max-connections"], config["max-message-size"]),
            ([DEFAULT_PORT], [], "line", 300.0, 10000, 1048576),
        )
        self.assertEqual(DEFAULT_PORT, "tcp:3001:interface=127.0.0.1")

    def test_repeatable(self) -> None:
        """
        --port and --echo may be given several times; --port replaces the
        default.
        """
        config = self.parse("--port", "tcp:1", "--port", "unix:/tmp/x.sock", "--echo", "tcp:2", "--echo", "tcp6:3")
        self.assertEqual((config["ports"], config["echo"]), (["tcp:1", "unix:/tmp/x.sock"], ["tcp:2", "tcp6:3"]))

    def test_values(self) -> None:
        config = self.parse("--framing", "int32", "--idle-timeout", "0", "--max-connections", "0", "--max-message-size", "10")
        self.assertEqual(
            (config["framing"], config["idle-timeout"], config["max-connections"], config["max-message-size"]),
            ("int32", 0.0, 0, 10),
        )

    def test_badEndpoint(self) -> None:
        """
        An endpoint string Twisted cannot parse names the option, the
        string, and examples.
        """
        self.assertUsageError(["--port", "nope:1"], "--port", "'nope:1'", "tcp:3001")
        self.assertUsageError(["--echo", "tcp:abc"], "--echo", "'tcp:abc'")

    def test_missingKeyFile(self) -> None:
        """
        A TLS endpoint whose key file is missing names the file.
        """
        self.assertUsageError(["--port", "ssl:3443:privateKey=/nonexistent/key.pem"], "--port", "/nonexistent/key.pem")

    def test_systemdWithoutSockets(self) -> None:
        """
        A systemd endpoint outside socket activation says so.
        """
        self.assertUsageError(["--port", "systemd:domain=INET:index=0"], "systemd passed no socket")

    def test_badNumbers(self) -> None:
        """
        Negative or non-numeric limits are refused with the option's name.
        """
        self.assertUsageError(["--idle-timeout", "-1"], "--idle-timeout", "'-1'")
        self.assertUsageError(["--idle-timeout", "soon"], "--idle-timeout")
        self.assertUsageError(["--idle-timeout", "nan"], "--idle-timeout")
        self.assertUsageError(["--idle-timeout", "inf"], "--idle-timeout")
        self.assertUsageError(["--max-connections", "-5"], "--max-connections")
        self.assertUsageError(["--max-connections", "1.5"], "--max-connections")
        self.assertUsageError(["--max-message-size", "0"], "--max-message-size")

    def test_workers(self) -> None:
        """
        --workers takes a count or auto; a worker runs the same options,
        less --workers, in the foreground, reusing the ports.
        """
        import os

        from jsonproto.daemon.supervisor import workerArguments

        self.assertEqual(self.parse("--workers", "3")["workers"], 3)
        self.assertEqual(self.parse("--workers", "auto")["workers"], os.cpu_count())
        self.assertUsageError(["--workers", "0"], "--workers")
        config = self.parse("--port", "tcp:1", "--workers", "2", "--idle-timeout", "5")
        self.assertEqual(
            workerArguments(config.rawArguments),
            ["-n", "--pidfile=", "jsonproto", "--port", "tcp:1", "--idle-timeout", "5", "--reuse-port"],
        )
        self.assertEqual(workerArguments(["--workers=4", "--echo", "tcp:2"])[3:], ["--echo", "tcp:2", "--reuse-port"])
        self.assertEqual(
            workerArguments(["--metrics", "tcp:9101", "--port", "tcp:1"], "/run/w0.sock")[3:],
            ["--port", "tcp:1", "--metrics", "unix:/run/w0.sock", "--reuse-port"],
        )

    def test_workersNeedShareablePorts(self) -> None:
        """
        With --workers, every listener must be one SO_REUSEPORT can share.
        """
        self.parse("--workers", "2", "--port", "tcp:1", "--echo", "haproxy:tcp:2")
        self.assertUsageError(["--workers", "2", "--port", "unix:/tmp/x.sock"], "--port", "cannot be shared by --workers")

    def test_mergeMetrics(self) -> None:
        """
        Workers' metrics merge into one text, each sample labelled with its
        worker and each family's samples together.
        """
        from prometheus_client.parser import text_string_to_metric_families

        from jsonproto.daemon.supervisor import mergeMetrics

        one = '# HELP x_total X.\n# TYPE x_total counter\nx_total{code="a"} 1.0\n# HELP y Y.\n# TYPE y gauge\ny 2.0\n'
        two = '# HELP x_total X.\n# TYPE x_total counter\nx_total{code="a"} 3.0\n'
        merged = mergeMetrics({"0": one, "1": two})
        samples = [s for f in text_string_to_metric_families(merged) for s in f.samples]
        self.assertEqual(
            sorted((s.labels["worker"], s.labels["code"], s.value) for s in samples if s.name == "x_total"),
            [("0", "a", 1.0), ("1", "a", 3.0)],
        )
        self.assertEqual([(s.labels, s.value) for s in samples if s.name == "y"], [({"worker": "0"}, 2.0)])
        self.assertEqual(merged.count("# TYPE"), 2)

    def test_badFraming(self) -> None:
        self.assertUsageError(["--framing", "xml"], "--framing", "line, int32", "'xml'")

    def test_handlers(self) -> None:
        """
        --handlers names modules; parsing only checks the names.
        """
        self.assertEqual(
            self.parse("--handlers", "tests.samplehandlers", "--handlers", "tests.slowhandlers")["handlers"],
            ["tests.samplehandlers", "tests.slowhandlers"],
        )
        self.assertUsageError(["--handlers", "my-app/handlers.py"], "'my-app/handlers.py'", "not a Python module name")

    def test_parsingHasNoSideEffects(self) -> None:
        """
        Parsing the options (as twistd does before it installs its reactor)
        installs no reactor and imports no --handlers module: a module that
        imports twisted.internet.reactor would otherwise choose the
        daemon's reactor.
        """
        import subprocess
        import sys

        from tests.e2e import REPO

        script = (
            "import sys; from jsonproto.daemon.tap import Options; "
            "Options().parseOptions(['--handlers', 'tests.slowhandlers', '--port', 'tcp:0', '--workers', '2']); "
            "print('twisted.internet.reactor' in sys.modules, 'tests.slowhandlers' in sys.modules)"
        )
        result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
        self.assertEqual((result.stdout.strip(), result.returncode), ("False False", 0), result.stderr)

    def test_logLevel(self) -> None:
        self.assertEqual(self.parse()["log-level"], "info")
        self.assertEqual(self.parse("--log-level", "warn")["log-level"], "warn")
        self.assertUsageError(["--log-level", "loud"], "--log-level", "debug, info, warn", "'loud'")

    def test_perAddressDefault(self) -> None:
        """
        One address may hold 100 connections unless told otherwise.
        """
        self.assertEqual(self.parse()["max-connections-per-ip"], 100)
        self.assertEqual(self.parse("--max-connections-per-ip", "0")["max-connections-per-ip"], 0)

    def test_perAddressExemptDefault(self) -> None:
        """
        The per-address limits spare loopback (IPv4, IPv6, and IPv4 as an
        IPv6 socket reports it) unless told otherwise; C{none} spares
        nothing; a value that is not a network is a usage error naming it.
        """
        spared = self.parse()["per-ip-exempt"]
        self.assertEqual(
            [host in spared for host in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1", "10.0.0.1", "::2")],
            [True, True, True, True, False, False],
        )
        self.assertNotIn("127.0.0.1", self.parse("--per-ip-exempt", "none")["per-ip-exempt"])
        chosen = self.parse("--per-ip-exempt", "10.0.0.0/8, fd00::/8")["per-ip-exempt"]
        self.assertEqual([host in chosen for host in ("10.1.2.3", "fd00::1", "127.0.0.1")], [True, True, False])
        self.assertUsageError(["--per-ip-exempt", "10.0.0.0/33"], "--per-ip-exempt", "'10.0.0.0/33'")
        self.assertUsageError(["--per-ip-exempt", "127.0.0.1/8"], "--per-ip-exempt", "'127.0.0.1/8'", "host bits")
        self.assertUsageError(["--per-ip-exempt", ""], "--per-ip-exempt", '"none"')
        self.assertUsageError(["--per-ip-exempt", "10.0.0.0/8,"], "--per-ip-exempt", "''")


class HandlersTests(TestCase):
    """
    The --handlers modules, loaded by makeService.
    """

    def dispatcher(self, *arguments: str) -> Any:
        config = Options()
        config.parseOptions(list(arguments))
        service = makeService(config, reactor)
        return service

    def test_handlers(self) -> None:
        """
        --handlers imports a module and lets it register message types,
        beside the seed's.
        """
        from jsonproto.daemon.handlers import loadDispatcher

        self.assertEqual(set(loadDispatcher(["tests.samplehandlers"]).messageTypes), {"GREETING", "SUM", "UPPER"})

    def test_noSeedTypes(self) -> None:
        """
        Without the seed's types, a service has only its own.
        """
        from jsonproto.daemon.handlers import loadDispatcher

        self.assertEqual(set(loadDispatcher(["tests.samplehandlers"], seedTypes=False).messageTypes), {"UPPER"})
        self.assertEqual(set(loadDispatcher([], seedTypes=False).messageTypes), set())

    def test_badHandlers(self) -> None:
        """
        A module that cannot be imported, has no register, or clashes with
        a registered type stops makeService with one line that says which
        (twistd prints it and exits with status 1).
        """
        for module, phrases in [
            ("no.such.module", ["'no.such.module' cannot be imported", "ModuleNotFoundError", "PYTHONPATH"]),
            ("json", ["'json' has no register(dispatcher)"]),
            ("tests.clashinghandlers", ["'SUM' already has a handler"]),
        ]:
            error = self.assertRaises(SystemExit, self.dispatcher, "--port", LOCAL, "--handlers", module)
            self.assertEqual(str(error.code).count("\n"), 0)
            self.assertTrue(str(error.code).startswith("twistd jsonproto: --handlers"), error.code)
            for phrase in phrases:
                self.assertIn(phrase, str(error.code))

    def test_channelsWithoutFlag(self) -> None:
        """
        A module whose register() uses dispatcher.channels, in a daemon
        started without --channels, stops makeService with one line that
        names the module, what it used, and the flag it needs.
        """
        error = self.assertRaises(SystemExit, self.dispatcher, "--port", LOCAL, "--handlers", "tests.privatehandlers")
        self.assertEqual(
            error.code,
            "twistd jsonproto: --handlers 'tests.privatehandlers' uses dispatcher.channels.authorize, which needs --channels",
        )

    def test_channelsUsedLaterWithoutFlag(self) -> None:
        """
        A module that keeps dispatcher.channels and publishes only when a
        message comes loads without --channels; that message is answered
        Internal error, and the log says to start the daemon with
        --channels (not that None has no attribute).
        """
        from jsonproto.daemon.handlers import ChannelsNotEnabled, loadDispatcher

        dispatcher = loadDispatcher(["tests.notehandlers"])
        self.assertFalse(dispatcher.channels)
        reply = dispatcher.dispatch({"type": "NOTE", "text": "hi", "id": 1}, None)
        self.assertEqual(reply, {"status": "ERROR", "message": "Internal error", "code": "internal_error", "id": 1})
        [failure] = self.flushLoggedErrors(ChannelsNotEnabled)
        self.assertEqual(
            str(failure.value), "dispatcher.channels.publish: the daemon has no channels; start it with --channels"
        )

    def test_unrelatedAttributeError(self) -> None:
        """
        A module whose register() fails on an attribute of None of its own
        is told that, with no word of --channels: the daemon does not
        guess at channels from an error's text.
        """
        error = self.assertRaises(SystemExit, self.dispatcher, "--port", LOCAL, "--handlers", "tests.buggyhandlers")
        self.assertEqual(
            error.code,
            "twistd jsonproto: --handlers 'tests.buggyhandlers': register(dispatcher) failed: "
            "AttributeError: 'NoneType' object has no attribute 'get'",
        )

    def test_channelsWithFlag(self) -> None:
        """
        With --channels, dispatcher.channels is the daemon's broker.
        """
        from jsonproto.channels.broker import Broker
        from jsonproto.daemon.handlers import loadDispatcher
        from jsonproto.daemon.tap import channelsFor

        config = Options()
        config.parseOptions(["--channels"])
        broker = channelsFor(config, reactor)
        assert broker is not None
        from jsonproto.channels.messages import register

        dispatcher = loadDispatcher(["tests.privatehandlers"], prepare=lambda d: register(d, broker))
        self.assertIsInstance(dispatcher.channels, Broker)
        self.assertIs(dispatcher.channels, broker)


class BacklogTests(TestCase):
    def test_withBacklog(self) -> None:
        """
        Listening endpoints get the accept-queue length unless they set one;
        PROXY-protocol wrappers pass it to the endpoint inside; endpoints
        without a backlog are left alone.
        """
        self.assertEqual(withBacklog("tcp:3001", 4096), "tcp:3001:backlog=4096")
        self.assertEqual(withBacklog("tcp:3001:backlog=10", 4096), "tcp:3001:backlog=10")
        self.assertEqual(withBacklog("haproxy:tcp:3001", 99), "haproxy:tcp:3001:backlog=99")
        self.assertEqual(withBacklog("ssl:3443:privateKey=k.pem", 5), "ssl:3443:privateKey=k.pem:backlog=5")
        self.assertEqual(withBacklog("systemd:domain=INET:index=0", 5), "systemd:domain=INET:index=0")

    @inlineCallbacks
    def test_listenerBacklog(self) -> None:
        """
        The daemon's listeners are made with --backlog.
        """
        service, [port] = yield startDaemon(self, "--port", LOCAL, "--backlog", "777")
        [listener] = list(service)
        from jsonproto import compat

        self.assertEqual(compat.tcpServerAddress(listener.endpoint).backlog, 777)


class DaemonTests(TestCase):
    """
    The service makeService builds, on real sockets.
    """

    @inlineCallbacks
    def test_seedExchange(self) -> None:
        """
        The seed's requests get the seed's replies over TCP.
        """
        _, [port] = yield startDaemon(self, "--port", LOCAL)
        received = yield exchange(
            f"tcp:127.0.0.1:{port}",
            b'{"type":"GREETING","name":"Alice"}\n{"type":"SUM","a":10,"b":20}\n{"type":"X"}\nnope\n',
            lines(4),
        )
        self.assertEqual(
            readLines(received),
            [
                {"status": "OK", "reply": "Hello, Alice!"},
                {"status": "OK", "result": 30},
                {"status": "ERROR", "message": "Unknown type", "code": "unknown_type"},
                {"status": "ERROR", "message": "Invalid JSON", "code": "invalid_json"},
            ],
        )

    @inlineCallbacks
    def test_int32AndEcho(self) -> None:
        """
        --framing int32 applies to --port listeners; --echo listeners echo.
        """
        _, [jsonPort, echoPort] = yield startDaemon(self, "--port", LOCAL, "--framing", "int32", "--echo", LOCAL)
        received = yield exchange(
            f"tcp:127.0.0.1:{jsonPort}", int32({"type": "SUM", "a": 2, "b": 3}), lambda d: len(d) >= 4 and len(d) >= 4 + struct.unpack("!I", d[:4])[0]
        )
        self.assertEqual(readInt32(received), [{"status": "OK", "result": 5}])
        echoed = yield exchange(f"tcp:127.0.0.1:{echoPort}", b"Hello Server, are you there?", lambda d: len(d) >= 28)
        self.assertEqual(echoed, b"Hello Server, are you there?")

    @inlineCallbacks
    def test_maxConnections(self) -> None:
        """
        Past --max-connections (counting every listener), a client gets
        "Server busy" and is disconnected; the connection already open
        keeps working.
        """
        _, [port, echoPort] = yield startDaemon(self, "--port", LOCAL, "--echo", LOCAL, "--max-connections", "1")
        holder = Collector(lines(2))
        yield endpoints.connectProtocol(endpoints.clientFromString(reactor, f"tcp:127.0.0.1:{port}"), holder)
        holder.transport.write(line({"type": "SUM", "a": 1, "b": 1}))
        refused = yield exchange(f"tcp:127.0.0.1:{port}", b"", lambda d: False)
        self.assertEqual(readLines(refused), [{"status": "ERROR", "message": "Server busy", "code": "server_busy"}])
        refusedEcho = yield exchange(f"tcp:127.0.0.1:{echoPort}", b"hello", lambda d: False)
        self.assertEqual(refusedEcho, b"")
        holder.transport.write(line({"type": "SUM", "a": 2, "b": 2}))
        self.assertEqual(readLines((yield holder.finished)), [{"status": "OK", "result": 2}, {"status": "OK", "result": 4}])
        holder.transport.loseConnection()
        yield holder.lost

    @inlineCallbacks
    def test_handlersModule(self) -> None:
        """
        Types a --handlers module registers are served.
        """
        _, [port] = yield startDaemon(self, "--port", LOCAL, "--handlers", "tests.samplehandlers")
        received = yield exchange(f"tcp:127.0.0.1:{port}", line({"type": "UPPER", "text": "abc", "id": 1}), lines(1))
        self.assertEqual(readLines(received), [{"status": "OK", "text": "ABC", "id": 1}])

    @inlineCallbacks
    def test_tls(self) -> None:
        """
        An ssl: endpoint with key and certificate in one file serves the
        same protocol over TLS.
        """
        keyFile = self.mktemp() + ".pem"
        writeCertificate(keyFile)
        _, [port] = yield startDaemon(self, "--port", f"ssl:0:interface=127.0.0.1:privateKey={keyFile}")
        received = yield exchange(f"ssl:127.0.0.1:{port}", line({"type": "GREETING", "name": "TLS"}), lines(1))
        self.assertEqual(readLines(received), [{"status": "OK", "reply": "Hello, TLS!"}])

    def test_portInUse(self) -> None:
        """
        A port already in use stops makeService with one line naming it
        and saying what to do, instead of a daemon that runs listening on
        nothing; so does one taken after makeService, when the listener
        starts.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        description = f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"
        for arguments in (["--port", description], ["--port", LOCAL, "--echo", description], ["--port", LOCAL, "--metrics", description]):
            config = Options()
            config.parseOptions(arguments)
            error = self.assertRaises(SystemExit, makeService, config, reactor)
            self.assertEqual(
                error.code,
                f"twistd jsonproto: cannot listen on {description}: Address already in use "
                "(another process is listening there: stop it, or choose another port)",
            )
        # Bound, not listening, by a socket that lets others bind too (as
        # the check does): it starts listening after the check.
        free = socket.socket()
        free.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        free.bind(("127.0.0.1", 0))
        late = f"tcp:{free.getsockname()[1]}:interface=127.0.0.1"
        config = Options()
        config.parseOptions(["--port", late])
        service = makeService(config, reactor)
        free.listen(1)
        self.addCleanup(free.close)
        error = self.assertRaises(CannotListen, service.privilegedStartService)
        self.assertTrue(str(error).startswith(f"cannot listen on {late}: Address already in use"), error)

    def test_unixDirectoryMissing(self) -> None:
        """
        A Unix socket in a directory that does not exist is one line naming
        the directory.
        """
        config = Options()
        config.parseOptions(["--port", "unix:/nonexistent/jsonproto/x.sock"])
        error = self.assertRaises(SystemExit, makeService, config, reactor)
        self.assertEqual(
            error.code,
            "twistd jsonproto: cannot listen on unix:/nonexistent/jsonproto/x.sock: the directory "
            "/nonexistent/jsonproto does not exist (create the directory first; under systemd, RuntimeDirectory=)",
        )

    @inlineCallbacks
    def test_noSeedTypes(self) -> None:
        """
        With --no-seed-types, GREETING and SUM are unknown types; the
        --handlers modules' types are served.
        """
        _, [port] = yield startDaemon(self, "--port", LOCAL, "--no-seed-types", "--handlers", "tests.samplehandlers")
        received = yield exchange(
            f"tcp:127.0.0.1:{port}",
            line({"type": "SUM", "a": 1, "b": 2}) + line({"type": "GREETING", "name": "x"}) + line({"type": "UPPER", "text": "a"}),
            lines(3),
        )
        self.assertEqual(
            readLines(received),
            [
                {"status": "ERROR", "message": "Unknown type", "code": "unknown_type"},
                {"status": "ERROR", "message": "Unknown type", "code": "unknown_type"},
                {"status": "OK", "text": "A"},
            ],
        )

    @inlineCallbacks
    def test_perAddressLimitByDefault(self) -> None:
        """
        By default one address holds at most 100 connections: the next one
        from it is told "Too many connections from your address", while
        another address still connects.  (Loopback is spared by default:
        C{--per-ip-exempt none} counts it like any other address.)
        """
        _, [port] = yield startDaemon(self, "--port", LOCAL, "--per-ip-exempt", "none")
        yield self._hold(port, 100)
        refused = yield exchange(f"tcp:127.0.0.1:{port}", b"", lambda d: False)
        self.assertEqual(readLines(refused)[0]["code"], "too_many_connections")
        other = yield exchange(
            f"tcp:127.0.0.1:{port}:bindAddress=127.0.0.2", line({"type": "SUM", "a": 2, "b": 2}), lines(1)
        )
        self.assertEqual(readLines(other), [{"status": "OK", "result": 4}])

    @inlineCallbacks
    def test_loopbackSparedByDefault(self) -> None:
        """
        Connections from the machine itself (a local proxy's pool, a load
        test) are not held to the per-address limit by default: the 150th
        from 127.0.0.1 is answered.
        """
        _, [port] = yield startDaemon(self, "--port", LOCAL)
        yield self._hold(port, 149)
        answered = yield exchange(f"tcp:127.0.0.1:{port}", line({"type": "SUM", "a": 2, "b": 2}), lines(1))
        self.assertEqual(readLines(answered), [{"status": "OK", "result": 4}])

    @inlineCallbacks
    def test_exemptNetworks(self) -> None:
        """
        C{--per-ip-exempt} names the networks spared, in place of loopback:
        127.0.0.2 is spared and 127.0.0.1, no longer, is limited.
        """
        _, [port] = yield startDaemon(
            self, "--port", LOCAL, "--max-connections-per-ip", "2", "--per-ip-exempt", "10.0.0.0/8,127.0.0.2"
        )
        yield self._hold(port, 2)
        refused = yield exchange(f"tcp:127.0.0.1:{port}", b"", lambda d: False)
        self.assertEqual(readLines(refused)[0]["code"], "too_many_connections")
        for _ in range(3):
            spared = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.2", 0))
            self.addCleanup(spared.close)
        answered = yield exchange(
            f"tcp:127.0.0.1:{port}:bindAddress=127.0.0.2", line({"type": "SUM", "a": 2, "b": 2}), lines(1)
        )
        self.assertEqual(readLines(answered), [{"status": "OK", "result": 4}])

    @inlineCallbacks
    def _hold(self, port: int, count: int) -> Any:
        """
        Open C{count} connections from 127.0.0.1 and keep them open for the
        test; return once the daemon has admitted every one.
        """
        held = []
        for _ in range(count):
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            self.addCleanup(c.close)
            held.append(c)
        # Every one of them is admitted before the next is tried.
        held[-1].sendall(line({"type": "SUM", "a": 1, "b": 1}))
        reply = yield _readLineOff(held[-1])
        self.assertEqual(json.loads(reply), {"status": "OK", "result": 2})


def _readLineOff(sock: socket.socket) -> Any:
    """
    Read one line from a blocking socket in a thread, so the reactor keeps
    serving it meanwhile.
    """
    from twisted.internet.threads import deferToThread

    return deferToThread(lambda: sock.makefile("rb").readline())


class AcceptQueueTests(TestCase):
    """
    Stopping takes the connections the kernel has accepted but the daemon
    has not: none of them is reset.
    """

    @inlineCallbacks
    def test_queuedConnectionsDrained(self) -> None:
        """
        Clients whose handshakes the kernel completed while the reactor was
        busy (here: not running at all, all 150 still in the accept queue
        when the daemon stops) are accepted and drained like the others:
        each gets a reply to its request and a clean close, not a reset.
        """
        service, [port] = yield startDaemon(self, "--port", LOCAL, "--max-connections-per-ip", "0")
        clients = []
        for index in range(150):
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            self.addCleanup(c.close)
            c.sendall(line({"type": "SUM", "a": index, "b": 1, "id": index}))
            clients.append(c)
        self.assertEqual(len(service.connections), 0)
        stopped = service.stopService()
        self.assertEqual(len(service.connections), 150)
        yield stopped
        for index, c in enumerate(clients):
            data = b""
            while chunk := c.recv(65536):  # a reset raises here
                data += chunk
            [reply] = readLines(data)
            self.assertEqual(reply.get("id"), index)
            self.assertIn(reply, ({"status": "OK", "result": index + 1, "id": index}, {**SHUTTING_DOWN, "id": index}))


    def test_noHandshakeAfterStop(self) -> None:
        """
        Once the daemon stops listening, the kernel completes no further
        handshake on its socket, though it is still open: a client that
        connects then is not accepted only to be reset, it is refused.
        """
        import select
        import sys

        from jsonproto.daemon.listening import acceptQueued, stopAdmitting

        if not sys.platform.startswith("linux"):
            raise SkipTest("a Linux socket filter")
        from twisted.internet.protocol import Factory, Protocol

        factory = Factory.forProtocol(Protocol)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        address = ("127.0.0.1", port.getHost().port)
        queued = socket.create_connection(address, timeout=10)
        self.addCleanup(queued.close)
        self.assertTrue(stopAdmitting(port))
        late = socket.socket()
        self.addCleanup(late.close)
        late.setblocking(False)
        self.assertNotEqual(late.connect_ex(address), 0)
        # Without the filter the handshake completes at once on loopback.
        self.assertEqual(select.select([], [late], [], 0.5)[1], [])
        accepted: list[Any] = []
        factory.buildProtocol = lambda addr: accepted.append(addr) or Protocol()  # type: ignore[method-assign]
        acceptQueued(port)
        self.assertEqual([a.port for a in accepted], [queued.getsockname()[1]])


SHUTTING_DOWN = {"status": "ERROR", "message": "Shutting down", "code": "shutting_down"}


class _ProcessReactor:
    """
    A clock that starts no process: spawnProcess records the worker, and
    the test ends it.
    """

    def __init__(self) -> None:
        from twisted.internet.task import Clock

        self.clock = Clock()
        self.spawned: list[Any] = []
        self.callLater = self.clock.callLater
        self.seconds = self.clock.seconds

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], env: Any, childFDs: Any) -> Any:
        class Transport:
            pid = 1000 + len(self.spawned)
            signals: list[str] = []

            def signalProcess(self, name: str) -> None:
                self.signals.append(name)

        transport = Transport()
        self.spawned.append((protocol, transport, args))
        return transport


class SupervisorTests(TestCase):
    """
    --workers: workers that die are restarted, later each time they keep
    dying, and the supervisor gives up after a bound.
    """

    def supervisor(self, count: int = 1) -> tuple[Any, _ProcessReactor, list[int]]:
        from jsonproto.daemon.supervisor import WorkerSupervisor

        reactor = _ProcessReactor()
        gaveUp: list[int] = []
        supervisor = WorkerSupervisor(count, lambda index, metrics: ["jsonproto"], 10, reactor, giveUp=lambda: gaveUp.append(1))
        supervisor.startService()
        return supervisor, reactor, gaveUp

    def die(self, reactor: _ProcessReactor, index: int = -1) -> None:
        from twisted.internet.error import ProcessTerminated
        from twisted.python.failure import Failure

        protocol = reactor.spawned[index][0]
        protocol.processEnded(Failure(ProcessTerminated(exitCode=1)))

    def test_backoff(self) -> None:
        """
        A worker that dies as it starts is restarted after 1, 2, 4, 8 and
        16 seconds; at its sixth such death the supervisor gives up
        instead of restarting it forever.
        """
        from jsonproto.daemon.supervisor import MAX_FAILURES

        supervisor, reactor, gaveUp = self.supervisor()
        delays = []
        for _ in range(MAX_FAILURES - 1):
            self.die(reactor)
            [call] = reactor.clock.getDelayedCalls()
            delays.append(call.getTime() - reactor.clock.seconds())
            started = len(reactor.spawned)
            reactor.clock.advance(delays[-1])
            self.assertEqual(len(reactor.spawned), started + 1)
        self.assertEqual(delays, [1, 2, 4, 8, 16])
        self.assertEqual(gaveUp, [])
        self.die(reactor)
        self.assertEqual(gaveUp, [1])
        self.assertEqual(reactor.clock.getDelayedCalls(), [])

    def test_delayCapped(self) -> None:
        """
        The delay doubles up to 30 seconds, no more.
        """
        from jsonproto.daemon.supervisor import restartDelay

        self.assertEqual([restartDelay(n) for n in range(8)], [1, 1, 2, 4, 8, 16, 30, 30])

    def test_stableWorkerRestartsPromptly(self) -> None:
        """
        A worker that ran a while before it died is not failing to start:
        it is restarted after a second, and its count starts again.
        """
        supervisor, reactor, gaveUp = self.supervisor()
        self.die(reactor)
        reactor.clock.advance(1)
        self.die(reactor)
        self.assertEqual(supervisor.failures[0], 2)
        reactor.clock.advance(2)
        reactor.clock.advance(60)  # the third worker runs a minute
        self.die(reactor)
        self.assertEqual(supervisor.failures[0], 0)
        [call] = reactor.clock.getDelayedCalls()
        self.assertEqual(call.getTime() - reactor.clock.seconds(), 1)

    def test_stopCancelsRestarts(self) -> None:
        """
        Stopping while a restart waits cancels it; SIGTERM goes to the
        workers still running.
        """
        supervisor, reactor, gaveUp = self.supervisor(2)
        self.die(reactor, 0)
        supervisor.stopService()
        self.assertEqual(reactor.clock.getDelayedCalls()[0].func.__name__, "_kill")
        self.assertEqual(reactor.spawned[1][1].signals, ["TERM"])
        self.die(reactor, 1)
        self.assertEqual(reactor.clock.getDelayedCalls(), [])

    def test_hangupPassedOn(self) -> None:
        """
        SIGHUP to the parent (the daemon's certificate reload) reaches
        every worker, which reload their own.
        """
        from jsonproto.daemon.service import JSONProtoService
        from jsonproto.server.registry import ConnectionRegistry

        supervisor, reactor, gaveUp = self.supervisor(2)
        top = JSONProtoService(ConnectionRegistry(), 10, reactor.clock)
        supervisor.setServiceParent(top)
        logs = LogCatcher(self)
        top.reloadCertificates()
        self.assertEqual([transport.signals for _, transport, _ in reactor.spawned], [["HUP"], ["HUP"]])
        self.assertEqual(logs.matching("no listener has TLS files"), [])

    def test_metricsDirectoryRemoved(self) -> None:
        """
        With --metrics, the workers' sockets live in a directory of their
        own while they run, removed once they have all ended.
        """
        import os

        from jsonproto.daemon.supervisor import WorkerSupervisor

        reactor = _ProcessReactor()
        supervisor = WorkerSupervisor(2, lambda index, metrics: ["--metrics", f"unix:{metrics}"], 10, reactor, metrics=True)
        supervisor.startService()
        directory = supervisor.metricsDirectory
        self.assertTrue(os.path.isdir(directory))
        self.assertEqual([args[-1] for _, _, args in reactor.spawned], [f"unix:{directory}/worker-0.sock", f"unix:{directory}/worker-1.sock"])
        supervisor.stopService()
        self.die(reactor, 0)
        self.assertTrue(os.path.isdir(directory))
        self.die(reactor, 1)
        self.assertFalse(os.path.exists(directory))

    def test_stopWithStatus(self) -> None:
        """
        Giving up stops the reactor and makes the process exit with status 1
        (twistd alone would exit 0 once its reactor stops).
        """
        import subprocess
        import sys

        from tests.e2e import REPO

        script = (
            "from twisted.internet import reactor; from jsonproto.daemon.supervisor import stopWithStatus; "
            "reactor.callWhenRunning(stopWithStatus, reactor, 1); reactor.run(); print('reactor stopped')"
        )
        result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
        self.assertEqual((result.returncode, result.stdout), (1, "reactor stopped\n"), result.stderr)


class LogLevelTests(TestCase):
    def test_filterLevel(self) -> None:
        """
        --log-level puts a filter in front of every observer already
        logging: events below the level reach none of them; put back,
        everything does again.
        """
        from twisted.logger import Logger, LogLevel, LogPublisher

        from jsonproto.daemon.logs import filterLevel

        first: list[Any] = []
        second: list[Any] = []
        publisher = LogPublisher(first.append, second.append)
        logger = Logger(observer=publisher)
        restore = filterLevel(LogLevel.warn, publisher)
        logger.info("connection opened")
        logger.warn("refusing connection")
        logger.error("worse")
        self.assertEqual([e["log_format"] for e in first], ["refusing connection", "worse"])
        self.assertEqual(first, second)
        restore()
        logger.info("connection opened")
        self.assertEqual(first[-1]["log_format"], "connection opened")
