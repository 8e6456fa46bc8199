"""
Processes for running the documentation's examples (L{tests.test_docs}): a
directory set up the way a user's is, shell commands with a time limit,
servers started in the background and stopped by their process id, and a
way to know a server is listening without connecting to it.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Sequence

COMMAND_SECONDS = 30.0
"""
How long one command or program may run, and a server may take to start.
"""

STOP_SECONDS = 20.0
"""
How long a server may take to stop: the daemon's drain (10 s by default)
and a margin.
"""

_CONSOLE_SCRIPT = """#!{python}
import sys
from {module} import {function}
sys.exit({function}())
"""

_NETCAT = '''#!{python}
"""
What OpenBSD netcat's C{{nc -N HOST PORT}} does, for machines without it:
send standard input, shut down the sending side, print what comes back
until the server closes.
"""
import socket
import sys

arguments = [a for a in sys.argv[1:] if a != "-N"]
if len(arguments) != 2 or "-N" not in sys.argv:
    sys.exit("nc: this stand-in knows only nc -N HOST PORT")
host, port = arguments
with socket.create_connection((host, int(port)), timeout={timeout}) as s:
    s.sendall(sys.stdin.buffer.read())
    s.shutdown(socket.SHUT_WR)
    while chunk := s.recv(65536):
        sys.stdout.buffer.write(chunk)
'''


class Directory:
    """
    A user's working directory, outside the repository: C{.venv/bin/}
    holds C{python}, C{twistd} and C{jsonproto} of the environment running
    the tests (on C{PATH} too, as in an activated virtualenv), and C{nc}
    is on C{PATH} as well.  Nothing puts the directory itself on
    C{sys.path}.
    """

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="jsonproto-docs-")
        bin = os.path.join(self.path, ".venv", "bin")
        tools = os.path.join(self.path, ".tools")
        os.makedirs(bin)
        os.makedirs(tools)
        self._script(os.path.join(bin, "python"), f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        for name, module, function in (("twistd", "twisted.scripts.twistd", "run"), ("jsonproto", "jsonproto.tools.cli", "run")):
            self._script(os.path.join(bin, name), _CONSOLE_SCRIPT.format(python=sys.executable, module=module, function=function))
        self._script(os.path.join(tools, "nc"), _NETCAT.format(python=sys.executable, timeout=COMMAND_SECONDS))
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.env["PATH"] = os.pathsep.join([bin, tools, os.environ.get("PATH", "/usr/bin:/bin")])

    @staticmethod
    def _script(path: str, text: str) -> None:
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)

    def write(self, name: str, text: str) -> str:
        """
        Write a file into the directory (making its folders); return its path.
        """
        path = os.path.join(self.path, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def importable(self) -> bool:
        """
        Whether jsonproto and its twistd plugin import here, as they do
        wherever the package is installed.
        """
        check = "import jsonproto, twisted.plugins.jsonproto_plugin"
        return subprocess.run([sys.executable, "-c", check], cwd=self.path, env=self.env, capture_output=True).returncode == 0

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def run(command: str, directory: Directory, stdin: bytes = b"") -> tuple[int, str]:
    """
    Run one shell command line in C{directory}; kill it (its whole process
    group, which it was started in) if it runs past L{COMMAND_SECONDS}.

    @return: Its exit status and its output, standard error included.
    """
    process = subprocess.Popen(
        ["bash", "-c", command],
        cwd=directory.path,
        env=directory.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(stdin, timeout=COMMAND_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(f"{command!r} ran for more than {COMMAND_SECONDS:g} seconds:\n{output.decode(errors='replace')}")
    return process.returncode, output.decode(errors="replace")


def runOnTerminal(command: str, directory: Directory, typed: bytes) -> tuple[int, str]:
    """
    Run one shell command line on a pseudo-terminal, type C{typed} and
    then end the input (Ctrl-D), as a person at a terminal would.

    @return: Its exit status and what the terminal showed.
    """
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        ["bash", "-c", command],
        cwd=directory.path,
        env=directory.env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    os.write(controller, typed + b"\x04")
    shown = b""
    deadline = time.monotonic() + COMMAND_SECONDS
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], deadline - time.monotonic())
            try:
                chunk = os.read(controller, 65536) if ready else b""
            except OSError:  # the terminal's other end closed: Linux says EIO
                break
            if not chunk:
                break
            shown += chunk
        else:
            os.killpg(process.pid, signal.SIGKILL)
        status = process.wait(timeout=COMMAND_SECONDS)
    finally:
        os.close(controller)
    return status, shown.decode(errors="replace")


def freePort() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listeningPorts() -> set[int]:
    """
    The TCP ports something listens on, IPv4 and IPv6, read from
    C{/proc/net}: finding out by connecting would be a connection the
    server counts and logs, and the examples show those figures.
    """
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.readlines()[1:]:
                fields = row.split()
                if fields[3] == "0A":  # LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def listeningUNIXPaths(cwd: str) -> set[str]:
    """
    The Unix socket paths something listens on, made absolute from
    C{cwd} (a server bound to a relative path is listed under it).
    """
    paths = set()
    with open("/proc/net/unix") as f:
        for row in f.readlines()[1:]:
            fields = row.split()
            if len(fields) >= 8 and int(fields[3], 16) & 0x10000:  # __SO_ACCEPTCON
                paths.add(os.path.normpath(os.path.join(cwd, fields[7])))
    return paths


def _alive(pid: int) -> bool:
    """
    Whether a process runs: it exists and is not a zombie, which its
    parent (for a daemon, init) has yet to collect.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


class Server:
    """
    A server an example starts: a program or daemon that runs until it is
    stopped.  A C{twistd} without C{-n} forks into the background and
    leaves its process id in its pid file: that is the process stopped.

    @ivar names: What the page calls its ports and Unix sockets (C{3001},
        C{unix:jsonproto.sock}), to tell which later servers clash with it.
    @ivar pidfile: The pid file it holds (absolute), or L{None}.
    """

    def __init__(
        self,
        description: str,
        argv: Sequence[str],
        directory: Directory,
        *,
        env: dict[str, str],
        ports: Sequence[int],
        unixPaths: Sequence[str],
        names: set[str],
        pidfile: str | None,
        daemonizes: bool,
    ) -> None:
        self.description = description
        self.names = names
        self.pidfile = pidfile
        self.daemonizes = daemonizes
        self._directory = directory
        self._log = tempfile.NamedTemporaryFile(prefix="jsonproto-docs-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            list(argv),
            cwd=directory.path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._log.close()
        self._waitUntilListening(ports, [os.path.join(directory.path, p) for p in unixPaths])

    def log(self) -> str:
        """
        What the server has printed so far.
        """
        with open(self._log.name, errors="replace") as f:
            return f.read()

    def _pid(self) -> int | None:
        """
        The process serving: the one started, or, for a daemon, the one
        its pid file names.
        """
        if not self.daemonizes:
            return self.process.pid if self.process.poll() is None else None
        try:
            with open(self.pidfile or "") as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def running(self) -> bool:
        """
        Whether the server is still serving.
        """
        return self._pid() is not None

    def _waitUntilListening(self, ports: Sequence[int], unixPaths: Sequence[str]) -> None:
        deadline = time.monotonic() + COMMAND_SECONDS
        while time.monotonic() < deadline:
            if self.daemonizes and self.process.poll() not in (None, 0):
                break
            if not self.daemonizes and self.process.poll() is not None:
                break
            if set(ports) <= listeningPorts() and set(unixPaths) <= listeningUNIXPaths(self._directory.path):
                if not self.daemonizes or self._pid() is not None:
                    return
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"{self.description} did not start listening on {list(ports) + list(unixPaths)}:\n{self.log()}")

    def stop(self, signalNumber: int = signal.SIGINT) -> int | None:
        """
        Stop the server as a user would: Ctrl-C (SIGINT) for one in the
        foreground, C{kill} (SIGTERM) of the pid in its file for a daemon.
        Killed if it has not stopped after L{STOP_SECONDS}.

        @return: The exit status of a server in the foreground.
        """
        if self.daemonizes:
            pid = self._pid()
            self.process.wait(timeout=STOP_SECONDS)
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + STOP_SECONDS
                while time.monotonic() < deadline and _alive(pid):
                    time.sleep(0.05)
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
                    raise AssertionError(f"{self.description} did not stop on SIGTERM:\n{self.log()}")
            return None
        # Once, in CI on Twisted 21.7.0, a daemon sent SIGINT just after its
        # port began to listen did not stop (twistd listens before the
        # reactor runs and installs its handlers; the cause is not proven,
        # and it did not recur in 45 tries on an idle machine).  A user
        # would press Ctrl-C again, and so does this, once a second, until
        # STOP_SECONDS have passed; while draining, the daemon only logs a
        # repeated signal (JSONProtoService._quietRepeatedSignals).
        deadline = time.monotonic() + STOP_SECONDS
        while self.process.poll() is None:
            if time.monotonic() >= deadline:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"{self.description} did not stop on signal {signalNumber}:\n{self.log()}")
            self.process.send_signal(signalNumber)
            try:
                self.process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        return self.process.returncode

    def discard(self) -> None:
        """
        Remove the server's log file, once it is stopped.
        """
        os.unlink(self._log.name)
