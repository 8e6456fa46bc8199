"""
The real C{twistd jsonproto} command in a child process: how it starts,
refuses to start, serves, and stops.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.docrun import freePort
from tests.e2e import REPO, daemonLog, twistd

DEADLINE = 30.0


def readUntil(process: subprocess.Popen[bytes], pattern: bytes, seconds: float = DEADLINE) -> re.Match[bytes]:
    """
    Wait until the daemon's log holds C{pattern} after the previous match;
    fail after C{seconds}, or once the daemon has exited without it.
    """
    start = getattr(process, "searchFrom", 0)
    end = time.monotonic() + seconds
    while True:
        exited = process.poll() is not None
        match = re.compile(pattern).search(daemonLog(process), start)
        if match:
            process.searchFrom = match.end()  # type: ignore[attr-defined]
            return match
        if exited or time.monotonic() > end:
            raise AssertionError(
                f"{pattern!r} not in the daemon's log:\n{daemonLog(process).decode(errors='replace')}"
            )
        time.sleep(0.02)


def serving(test: SynchronousTestCase, *arguments: str) -> tuple[subprocess.Popen[bytes], int]:
    """
    A daemon in the foreground on a free port of 127.0.0.1 with these
    options, killed (if still running) and its log removed when the test
    ends.

    @return: The process, and the port it serves JSON on.
    """
    process = twistd("-n", "--pidfile=", "jsonproto", "--port", "tcp:0:interface=127.0.0.1", *arguments)
    test.addCleanup(lambda: process.poll() is None and process.kill())
    test.addCleanup(os.unlink, process.logPath)
    return process, int(readUntil(process, rb"JSONServerFactory starting on (\d+)").group(1))


class TwistdTests(SynchronousTestCase):
    def runTwistd(self, *arguments: str) -> subprocess.CompletedProcess[bytes]:
        process = twistd(*arguments)
        process.wait(timeout=DEADLINE)
        output = daemonLog(process)
        os.unlink(process.logPath)  # type: ignore[attr-defined]
        return subprocess.CompletedProcess(process.args, process.returncode, output)

    def test_usageError(self) -> None:
        """
        A bad option stops twistd with status 1 (on every supported
        Twisted: twistd before 26.10 exits 0 on its own usage errors) and
        one sentence naming the option.
        """
        result = self.runTwistd("-n", "--pidfile=", "jsonproto", "--max-connections", "-1")
        self.assertEqual(
            (result.returncode, result.stdout),
            (1, b"twistd jsonproto: --max-connections must be a whole number, 0 or more, not '-1' "
                b"(twistd jsonproto --help lists the options)\n"),
        )

    def test_portInUse(self) -> None:
        """
        A port already in use ends the daemon with status 1 and one line
        naming it and what to do, in the foreground and daemonised alike.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = f"tcp:{taken.getsockname()[1]}:interface=127.0.0.1"
        expected = (
            f"twistd jsonproto: cannot listen on {port}: Address already in use "
            "(another process is listening there: stop it, or choose another port)\n"
        ).encode()
        result = self.runTwistd("-n", "--pidfile=", "jsonproto", "--port", port)
        self.assertEqual((result.returncode, result.stdout), (1, expected))
        logfile = self.mktemp()
        result = self.runTwistd(f"--pidfile={self.mktemp()}", f"--logfile={logfile}", "jsonproto", "--port", port)
        self.assertEqual((result.returncode, result.stdout), (1, expected))
        # With --workers too: no worker is started to fail over and over.
        result = self.runTwistd("-n", "--pidfile=", "jsonproto", "--port", port, "--workers", "2")
        self.assertEqual((result.returncode, result.stdout), (1, expected))

    def test_portOutOfRange(self) -> None:
        """
        A port number no TCP port has: status 1 and one line saying so, not
        a traceback.
        """
        result = self.runTwistd("-n", "--pidfile=", "jsonproto", "--port", "tcp:99999:interface=127.0.0.1")
        self.assertEqual(
            (result.returncode, result.stdout),
            (1, b"twistd jsonproto: cannot listen on tcp:99999:interface=127.0.0.1: bind(): port must be 0-65535.\n"),
        )

    def test_unixDirectoryMissing(self) -> None:
        """
        A Unix socket in a directory that does not exist: status 1 and one
        line naming the directory.
        """
        result = self.runTwistd("-n", "--pidfile=", "jsonproto", "--port", "unix:/nonexistent/jsonproto/x.sock")
        self.assertEqual(
            (result.returncode, result.stdout),
            (1, b"twistd jsonproto: cannot listen on unix:/nonexistent/jsonproto/x.sock: the directory "
                b"/nonexistent/jsonproto does not exist (create the directory first; under systemd, RuntimeDirectory=)\n"),
        )

    def test_handlersCannotImport(self) -> None:
        """
        A --handlers module that cannot be imported: status 1 and one line.
        """
        result = self.runTwistd("-n", "--pidfile=", "jsonproto", "--handlers", "no.such.module")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout.count(b"\n"), 1, result.stdout)
        self.assertIn(b"--handlers 'no.such.module' cannot be imported", result.stdout)

    def test_handlersImportingTheReactor(self) -> None:
        """
        A --handlers module that imports twisted.internet.reactor at the top
        (as tests.slowhandlers does) runs on the daemon's reactor: the
        reactor is installed before the module is imported.
        """
        process, port = serving(self, "--handlers", "tests.slowhandlers")
        self.assertIn(b"reactor class: jsonproto.compat.EPollReactor", daemonLog(process))
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as client:
            client.sendall(b'{"type":"SLOW","seconds":0,"id":1}\n')
            self.assertEqual(json.loads(client.makefile("rb").readline()), {"status": "OK", "slept": 0.0, "id": 1})
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DEADLINE)

    def test_serveAndStop(self) -> None:
        """
        The daemon serves on the port it logs, and SIGTERM stops it cleanly
        (it ends by that signal, which systemd counts as a clean stop), closing the connections still open.
        """
        process, port = serving(self)
        self.assertIn(b"reactor class: jsonproto.compat.EPollReactor", daemonLog(process))
        # Operators can tell from the log which core answers.
        from jsonproto.core import compiled

        # (Written once the service starts, which may be just after the listener logs its port.)
        self.assertEqual(readUntil(process, rb"core: (\w+)").group(1).decode(), compiled.implementation())
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as client:
            client.sendall(b'{"type":"SUM","a":10,"b":20,"id":"x"}\n')
            reply = client.makefile("rb").readline()
            self.assertEqual(json.loads(reply), {"status": "OK", "result": 30, "id": "x"})
            process.send_signal(signal.SIGTERM)
            # The open connection is closed by the server as it stops.
            self.assertEqual(client.recv(1), b"")
        # twistd ends by re-raising the signal, as systemd expects of a clean stop.
        self.assertEqual(process.wait(timeout=DEADLINE), -signal.SIGTERM)

    def test_reactorChoice(self) -> None:
        """
        twistd -r still chooses the reactor.
        """
        process = twistd("-r", "poll", "-n", "--pidfile=", "jsonproto", "--port", "tcp:0:interface=127.0.0.1")
        self.addCleanup(lambda: process.poll() is None and process.kill())
        readUntil(process, rb"JSONServerFactory starting on")
        self.assertIn(b"reactor class: twisted.internet.pollreactor.PollReactor", daemonLog(process))
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DEADLINE)
        os.unlink(process.logPath)  # type: ignore[attr-defined]

    def test_secondSignal(self) -> None:
        """
        A second SIGTERM or a SIGINT while the daemon drains is logged, not
        answered with a traceback; the request in flight is still answered
        and the exit status is the first signal's.
        """
        process, port = serving(self, "--handlers", "tests.slowhandlers")
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as client:
            client.sendall(b'{"type":"SLOW","seconds":1,"id":1}\n')
            readUntil(process, rb"connection 1 from .* opened")
            process.send_signal(signal.SIGTERM)
            readUntil(process, rb"draining 1 connection \(")
            process.send_signal(signal.SIGTERM)
            readUntil(process, rb"received SIGTERM while draining")
            process.send_signal(signal.SIGINT)
            readUntil(process, rb"received SIGINT while draining")
            self.assertEqual(json.loads(client.makefile("rb").readline()), {"status": "OK", "slept": 1.0, "id": 1})
        process.wait(timeout=DEADLINE)
        self.assertNotIn(b"Traceback", daemonLog(process))
        self.assertEqual(process.returncode, -signal.SIGTERM)


    def test_logLevel(self) -> None:
        """
        With --log-level warn, connections that come and go write nothing;
        refusals are logged, one line for a burst and then a count, not a
        line each.
        """
        process, port = serving(self, "--log-level", "warn", "--max-connections", "1")
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as holder:
            holder.sendall(b'{"type":"SUM","a":1,"b":2}\n')
            holder.makefile("rb").readline()
            for _ in range(20):
                with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as refused:
                    self.assertIn(b"server_busy", refused.makefile("rb").readline())
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=DEADLINE)
        logged = daemonLog(process)
        self.assertNotIn(b"opened", logged)
        self.assertNotIn(b"closed after", logged)
        self.assertEqual(logged.count(b"refusing connection"), 1, logged)
        self.assertIn(b"refused 19 more connections (server_busy) in 1 seconds", logged)


class JSONLogTests(SynchronousTestCase):
    def test_jsonLogs(self) -> None:
        """
        With twistd --logger jsonproto.daemon.logs.jsonLogObserver, every log line
        is a JSON object; connection events carry the connection's id and
        peer as fields.
        """
        process = twistd(
            "--logger", "jsonproto.daemon.logs.jsonLogObserver", "-n", "--pidfile=", "jsonproto",
            "--port", "tcp:0:interface=127.0.0.1",
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        match = readUntil(process, rb"starting on (\d+)")
        port = int(match.group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as client:
            client.sendall(b'{"type":"SUM","a":1,"b":2}\n')
            client.makefile("rb").readline()
        readUntil(process, rb"closed after")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DEADLINE)
        records = [json.loads(r) for r in daemonLog(process).decode().split("\x1e") if r.strip()]
        os.unlink(process.logPath)  # type: ignore[attr-defined]
        opened = [r for r in records if r.get("log_format", "").startswith("connection {connectionId} from {peer} opened")]
        closed = [r for r in records if "closed after" in r.get("log_format", "")]
        self.assertEqual(len(opened), 1)
        self.assertEqual(opened[0]["connectionId"], closed[0]["connectionId"])
        self.assertTrue(opened[0]["peer"].startswith("127.0.0.1:"))
        self.assertEqual(closed[0]["messagesIn"], 1)


class SocketActivationTests(SynchronousTestCase):
    def test_systemdSocket(self) -> None:
        """
        Started as systemd starts a socket-activated service (the listening
        socket as descriptor 3, LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES
        set), the daemon
        serves on that socket with --port systemd:domain=INET:index=0.
        """
        listening = socket.socket()
        self.addCleanup(listening.close)
        listening.bind(("127.0.0.1", 0))
        listening.listen(50)
        port = listening.getsockname()[1]
        fd = listening.fileno()
        # As systemd does it: the socket as descriptor 3, LISTEN_PID naming
        # the daemon's own process.  Done in Python, not /bin/sh, which
        # cannot take a descriptor above 9.
        trampoline = (
            "import os, sys; fd = int(sys.argv[1]); fd == 3 or (os.dup2(fd, 3), os.close(fd)); "
            "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='jsonproto'); "
            "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
        )
        env = dict(os.environ, PYTHONPATH=REPO)
        log = self.mktemp()
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", trampoline, str(fd), "-c", "from twisted.scripts.twistd import run; run()",
                 "-n", "--pidfile=", "jsonproto", "--port", "systemd:domain=INET:index=0"],
                pass_fds=(fd,), env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        process.logPath = log  # type: ignore[attr-defined]
        readUntil(process, rb"JSONServerFactory starting on")
        listening.close()  # only the daemon holds it now
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as client:
            client.sendall(b'{"type":"SUM","a":2,"b":3}\n')
            self.assertEqual(json.loads(client.makefile("rb").readline()), {"status": "OK", "result": 5})
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DEADLINE)


class WorkersTests(SynchronousTestCase):
    def test_workers(self) -> None:
        """
        --workers 2: two processes answer on the same port; a worker that
        is killed is replaced and the port keeps answering; SIGTERM to the
        parent drains both (their slow requests are answered) and ends all.
        """
        ports = []
        for _ in range(2):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
            probe.close()
        port, metricsPort = ports
        process = twistd(
            "-n", "--pidfile=", "jsonproto", "--port", f"tcp:{port}:interface=127.0.0.1",
            "--workers", "2", "--handlers", "tests.peerhandlers", "--handlers", "tests.slowhandlers",
            "--metrics", f"tcp:{metricsPort}:interface=127.0.0.1",
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        readUntil(process, rb"JSONServerFactory starting on")
        readUntil(process, rb"JSONServerFactory starting on")

        def pids(count: int) -> set[int]:
            seen = set()
            for _ in range(count):
                with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as c:
                    c.sendall(b'{"type":"PID"}\n')
                    seen.add(json.loads(c.makefile("rb").readline())["pid"])
            return seen

        first = pids(40)
        self.assertEqual(len(first), 2)
        # The parent serves every worker's metrics, labelled by worker.
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        text = urllib.request.urlopen(f"http://127.0.0.1:{metricsPort}/metrics", timeout=DEADLINE).read().decode()
        received = {
            s.labels["worker"]: s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "jsonproto_messages_received_total"
        }
        self.assertEqual(set(received), {"0", "1"})
        self.assertEqual(sum(received.values()), 40)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        readUntil(process, rb"worker \d ended")
        readUntil(process, rb"worker \d started, process \d+")
        readUntil(process, rb"JSONServerFactory starting on")
        second = pids(40)
        self.assertEqual(len(second), 2)
        self.assertNotIn(victim, second)
        clients = []
        served = set()
        for _ in range(6):
            c = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
            c.sendall(b'{"type":"PID"}\n{"type":"SLOW","seconds":0.5,"id":1}\n')
            reader = c.makefile("rb")
            # The PID reply proves a worker took the connection.
            served.add(json.loads(reader.readline())["pid"])
            clients.append((c, reader))
        process.send_signal(signal.SIGTERM)
        for c, reader in clients:
            with c:
                self.assertEqual(json.loads(reader.readline()), {"status": "OK", "slept": 0.5, "id": 1})
                self.assertEqual(reader.read(), b"")
        process.wait(timeout=DEADLINE)
        # The directory of the workers' metrics sockets is gone with them.
        directory = re.search(rb"Site starting on '(.*)/worker-0.sock'", daemonLog(process)).group(1)
        self.assertFalse(os.path.exists(directory), directory)
        self.assertEqual(len(served & second), len(served))
        for pid in second:
            with self.assertRaises(ProcessLookupError):
                os.kill(pid, 0)
        os.unlink(process.logPath)  # type: ignore[attr-defined]

    def test_workersTLS(self) -> None:
        """
        Workers share TLS listeners too (ssl: and jsonproto-tls:).
        """
        from jsonproto.tools import certs
        from jsonproto.client import Client

        key = os.path.abspath(self.mktemp())
        certs.writeCertificate(key, ["localhost", "127.0.0.1"])
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        process = twistd(
            "-n", "--pidfile=", "jsonproto", "--port", f"jsonproto-tls:{port}:interface=127.0.0.1:privateKey={key}",
            "--workers", "2", "--handlers", "tests.peerhandlers",
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        readUntil(process, rb"\(TLS\) starting on")
        readUntil(process, rb"\(TLS\) starting on")
        seen = set()
        for _ in range(30):
            with Client("localhost", port, tls=True, ca=key, timeout=DEADLINE) as c:
                seen.add(c.request({"type": "PID"})["pid"])
        self.assertEqual(len(seen), 2)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DEADLINE)
        os.unlink(process.logPath)  # type: ignore[attr-defined]


def readAll(client: socket.socket) -> bytes:
    """
    Everything the server sends until it closes; a reset raises.
    """
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    return data


class AcceptQueueDrainTests(SynchronousTestCase):
    """
    SIGTERM drains the connections the kernel has accepted but the daemon
    has not yet taken from its accept queue, as it drains the others.
    """

    def drainQueued(self, clients: int, *arguments: str) -> None:
        """
        Stop the daemon's processes (SIGSTOP), connect clients that each
        send two requests (the kernel completes their handshakes and queues
        them), then SIGTERM and SIGCONT: every client gets both replies
        (answered, or "Shutting down") and a clean close, none a reset.

        @param clients: How many; more per process than Twisted accepts in
            one read (100), so that some are still queued when it stops.
        """
        port = freePort()
        process = twistd("-n", "--pidfile=", "jsonproto", "--port", f"tcp:{port}:interface=127.0.0.1",
                         "--max-connections-per-ip", "0", "--shutdown-timeout", "60", "--handlers", "tests.peerhandlers",
                         *arguments)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        self.addCleanup(os.unlink, process.logPath)
        starting = 1 if "--workers" not in arguments else int(arguments[arguments.index("--workers") + 1])
        for _ in range(starting):
            readUntil(process, rb"JSONServerFactory starting on")
        # Running means answering: until its reactor runs, a process has no
        # SIGTERM handler, and the signal would kill it outright.
        answering: set[int] = set()
        end = time.monotonic() + DEADLINE
        while len(answering) < starting and time.monotonic() < end:
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as probe:
                probe.sendall(b'{"type":"PID"}\n')
                answering.add(json.loads(probe.makefile("rb").readline())["pid"])
        self.assertEqual(len(answering), starting)
        workers = [int(m) for m in re.findall(rb"worker \d started, process (\d+)", daemonLog(process))]
        stopped = workers or [process.pid]
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        try:
            connected = []
            for index in range(clients):
                c = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
                self.addCleanup(c.close)
                c.sendall(b'{"type":"SUM","a":%d,"b":1,"id":%d}\n{"type":"GREETING","name":"q"}\n' % (index, index))
                connected.append(c)
            process.send_signal(signal.SIGTERM)
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
        shuttingDown = {"status": "ERROR", "message": "Shutting down", "code": "shutting_down"}
        for index, c in enumerate(connected):
            first, second = [json.loads(l) for l in readAll(c).splitlines()]
            self.assertIn(first, ({"status": "OK", "result": index + 1, "id": index}, {**shuttingDown, "id": index}))
            self.assertIn(second, ({"status": "OK", "reply": "Hello, q!"}, shuttingDown))
        process.wait(timeout=DEADLINE)

    def test_singleProcess(self) -> None:
        self.drainQueued(150)

    def test_workers(self) -> None:
        self.drainQueued(400, "--workers", "2")


class DrainTests(SynchronousTestCase):
    """
    What a client gets when the daemon stops while it is sending.
    """

    def test_everythingSentIsAnswered(self) -> None:
        """
        A client that had pipelined more requests than the daemon can read
        in the drain's first turn, and is slow to read its replies (so the
        daemon must stop reading while it waits), gets one reply for every
        request it had sent when SIGTERM came, in order: answered normally
        up to some point, "Shutting down" after it, none left unanswered.
        Then a clean close, not a reset.
        """
        # A slow machine, answering the pure-Python way, has all the time
        # it needs: only a lost reply may fail this test.
        process, port = serving(self, "--shutdown-timeout", "60")
        with socket.socket() as client:
            # A small window, so that the replies overflow what the kernel
            # holds for the client and the daemon must stop reading.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            client.settimeout(DEADLINE)
            client.connect(("127.0.0.1", port))
            # Running means answering: until its reactor runs, the daemon
            # has no SIGTERM handler.
            client.sendall(b'{"type":"SUM","a":0,"b":1,"id":0}\n')
            self.assertEqual(json.loads(client.makefile("rb").readline()), {"status": "OK", "result": 1, "id": 0})
            # While the daemon is stopped, send until the socket's buffers
            # are full: all of that has been sent when SIGTERM arrives.
            os.kill(process.pid, signal.SIGSTOP)
            try:
                client.setblocking(False)
                burst = b"".join(b'{"type":"SUM","a":%d,"b":1,"id":%d}\n' % (i, i) for i in range(1, 200_001))
                sent = 0
                for _ in range(10_000):
                    try:
                        sent += client.send(burst[sent:sent + 65536])
                    except BlockingIOError:
                        break
                # Only whole requests count as sent (the rest of the last
                # is never sent).
                count = burst[:sent].count(b"\n")
                client.setblocking(True)
                process.send_signal(signal.SIGTERM)
            finally:
                os.kill(process.pid, signal.SIGCONT)
            readUntil(process, rb"draining 1 connection \(")
            # The client reads nothing for many of the drain's turns.
            time.sleep(0.3)
            replies = [json.loads(l) for l in readAll(client).splitlines()]
        self.assertGreater(count, 10_000)
        self.assertEqual([r["id"] for r in replies], list(range(1, count + 1)))
        answered = [r for r in replies if r["status"] == "OK"]
        self.assertEqual(answered, [{"status": "OK", "result": i + 1, "id": i} for i in range(1, len(answered) + 1)])
        shuttingDown = {"status": "ERROR", "message": "Shutting down", "code": "shutting_down"}
        self.assertEqual(replies[len(answered):], [{**shuttingDown, "id": i} for i in range(len(answered) + 1, count + 1)])
        self.assertEqual(process.wait(timeout=DEADLINE), -signal.SIGTERM)
        self.assertNotIn(b"aborting", daemonLog(process))
