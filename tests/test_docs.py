"""
Every example in README.md and docs/*.md, run as a user would run it: what
a page shows is what happens.

The rules, for anyone writing a page:

B{Blocks.}  Each fenced block is of the kind its info string names, and
L{KINDS} says what is done with it: C{python}, C{console} and C{sh}
blocks are run, C{json} is parsed, plain blocks (bytes on the wire, log
lines, configuration) and Sphinx directives are shown only.  A block of
any other kind fails the test: add the kind to the table first.  A block
that cannot run alone (a systemd unit, a function without its module)
says so with the marker C{<!-- fragment -->} on the line just before its
fence; a fragment is only checked (Python compiled, a systemd unit's
C{ExecStart=} parsed by the daemon's options).

B{The page's directory.}  Each page runs in a new temporary directory, not
the repository.  C{.venv/bin/} there holds C{python}, C{twistd} and
C{jsonproto} of the environment running the tests, and is on C{PATH} (so
C{jsonproto} alone works too), as is C{nc} (a stand-in that knows only
C{nc -N HOST PORT}).  Blocks run in the page's order; each command in a
new shell in that directory (a C{cd} does not carry over), and files a
command makes stay for later blocks.

B{Files.}  A C{python} block whose first line is C{# PATH.py} is that
file: it is written into the directory before the page's first command
runs, and some command of the page must use it (C{--handlers
myapp.handlers}, C{python client.py}).  Nothing puts the directory on
C{sys.path}: a command that imports from it says C{PYTHONPATH=.}, as a
user's must.  Any other C{python} block is a program: it is run with
C{.venv/bin/python} in the directory and must exit 0.

B{Ports and paths.}  Whole numbers from 3000 to 3999 and from 9100 to
9199 are the page's ports: in commands, programs and shown output alike,
each stands for one free port on 127.0.0.1, the same one throughout the
page.  A C{tcp:}, C{ssl:} or C{jsonproto-tls:} server endpoint with no
C{interface=} gets C{interface=127.0.0.1}; a daemon started without
C{--port} gets its default, C{tcp:3001:interface=127.0.0.1}, port
substituted.  Paths under C{/etc/jsonproto/}, C{/opt/jsonproto/},
C{/run/} and C{/var/log/} stand for files in the page's directory.  Hosts
are C{localhost} and 127.0.0.1 (::1 for C{tcp6:}) only.

B{Servers.}  In an C{sh} block, a C{twistd ... jsonproto} line (and
C{make run}, which is the Makefile's C{run} recipe) starts a server, which
the next blocks of the page talk to.  The test waits until every port and
Unix socket the line names is listening (read from C{/proc/net}: no probe
connects, so the server's counters are what the page's commands make
them).  A server first stops the page's earlier server that has one of
its ports, or its pid file (C{twistd.pid} unless C{--pidfile} says
otherwise), as its user would have to.  A C{redis-server} line starts
one the same way, in the foreground (the page is skipped where Debian's
C{redis-server} is not installed).  A C{python} program that names a
server endpoint (C{"tcp:3001"}) is a server too; it is run first with
each of its ports taken, and must then print one line and exit non-zero,
and when it is stopped by Ctrl-C it must exit 0.  Every server is stopped
when its page ends (Ctrl-C in the foreground, SIGTERM to a daemon's pid),
and must still be running then.

B{Commands.}  In a C{console} block each C{$ } line is a command and the
lines after it, up to the next, are its output (standard output and error
together), compared line by line; a line with figures that change between
runs (L{FIGURES}) is compared by shape.  In an C{sh} block every line is a
command (a trailing comment is the shell's) that must exit 0; its output
is not compared.  A command commented C{# at a terminal} runs on a
pseudo-terminal, where the test types L{TYPED} and then Ctrl-D.
L{NOT_RUN} names the only commands not run, and why.  Every command must
finish within L{docrun.COMMAND_SECONDS} seconds.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import socket
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.trial.unittest import SkipTest, TestCase

from tests import docrun
from tests.e2e import REPO

PAGES = [os.path.join(REPO, "README.md"), *sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))]

FRAGMENT = "<!-- fragment -->"

TYPED = b'{"type":"SUM","a":1,"b":2}\n'
"""
What the test types at a command run C{# at a terminal}.
"""


@dataclass
class Block:
    """
    One fenced block of a page.
    """

    page: str
    line: int
    kind: str
    text: str
    fragment: bool

    def __str__(self) -> str:
        return f"{os.path.relpath(self.page, REPO)}:{self.line} ({self.kind or 'plain'})"


FENCE = re.compile(r"^( *)```(.*)$")


def readBlocks(page: str) -> list[Block]:
    """
    The fenced blocks of a Markdown page, in order, indented ones (in a
    list item) included, their text dedented.
    """
    with open(page, encoding="utf-8") as f:
        lines = f.read().splitlines()
    blocks, start = [], None
    for number, line in enumerate(lines):
        fence = FENCE.match(line)
        if start is None and fence:
            start, indent, kind = number, len(fence.group(1)), fence.group(2).strip()
        elif start is not None and fence and not fence.group(2).strip():
            fragment = start > 0 and lines[start - 1].strip() == FRAGMENT
            text = "".join(l[indent:] + "\n" for l in lines[start + 1 : number])
            blocks.append(Block(page, start + 1, kind, text, fragment))
            start = None
    return blocks


# Ports, endpoints and paths: what a page writes, and what the test uses.

PORT = re.compile(r"(?<![\w.])(3\d{3}|91\d{2})(?![\w.])")
# A server endpoint's port is a number on its own (tcp:3001, tcp:3001:...),
# not the start of a client endpoint's host (tcp:127.0.0.1:...).
SERVER_ENDPOINT = re.compile(r"\b(tcp|ssl|jsonproto-tls):(\d+)(?=[:\s'\"]|$)([^\s'\"]*)")
UNIX_SERVER = re.compile(r"--(?:port|echo|metrics)[= ]unix:([^:\s'\"]+)")
SYSTEM_PATH = re.compile(r"(?<![\w.])/(?:etc/jsonproto|opt/jsonproto|run|var/log)/")
FILE_HEADER = re.compile(r"# ([\w./-]+\.py)\n")
CLIENT_OPTION = re.compile(r"--redis[= ]\S+")


def _loopbackOnly(match: re.Match[str]) -> str:
    kind, port, parameters = match.groups()
    if "interface=" in parameters:
        return match.group(0)
    return f"{kind}:{port}{parameters}:interface=127.0.0.1"


@dataclass
class Page:
    """
    The state of one page's run: its directory, its ports, its servers.
    """

    directory: docrun.Directory
    ports: dict[str, int] = field(default_factory=dict)
    servers: list[docrun.Server] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def substitute(self, text: str) -> str:
        """
        A page's text as the test runs it: its ports, loopback
        interfaces and paths.
        """
        text = SYSTEM_PATH.sub("", SERVER_ENDPOINT.sub(_loopbackOnly, text))
        return PORT.sub(lambda m: str(self.port(m.group(1))), text)

    def port(self, name: str) -> int:
        if name not in self.ports:
            self.ports[name] = docrun.freePort()
        return self.ports[name]

    def start(
        self,
        description: str,
        argv: list[str],
        text: str,
        *,
        env: dict[str, str] | None = None,
        pidfile: str | None = None,
        daemonizes: bool = False,
        exitsCleanly: bool = False,
    ) -> None:
        """
        Start a server after stopping any of the page's servers it clashes
        with.  C{text} is the page's own text for it, which names its
        ports and sockets.

        @param exitsCleanly: Whether it must exit 0 when stopped.
        """
        names, pidfile = self.makeRoom(text, pidfile)
        server = docrun.Server(
            description,
            argv,
            self.directory,
            env=env or self.directory.env,
            ports=[self.port(p) for p in PORT.findall(text)],
            unixPaths=UNIX_SERVER.findall(text),
            names=names,
            pidfile=pidfile,
            daemonizes=daemonizes,
        )
        server.exitsCleanly = exitsCleanly  # type: ignore[attr-defined]
        self.servers.append(server)

    def makeRoom(self, text: str, pidfile: str | None = None) -> tuple[set[str], str | None]:
        """
        Stop the page's servers that hold a port, Unix socket or pid file
        a new server named in C{text} needs.

        @return: The names of its ports and sockets, and its pid file's path.
        """
        names = set(PORT.findall(text)) | {f"unix:{p}" for p in UNIX_SERVER.findall(text)}
        pidfile = os.path.join(self.directory.path, pidfile) if pidfile else None
        for server in [s for s in self.servers if s.names & names or (pidfile and s.pidfile == pidfile)]:
            self.stop(server)
        return names, pidfile

    def stop(self, server: docrun.Server, check: bool = True) -> None:
        self.servers.remove(server)
        running = server.running()
        status = server.stop()
        log = server.log()
        server.discard()
        if check and not running:
            raise AssertionError(f"{server.description} exited {status} before the page was done with it:\n{log}")
        if check and server.exitsCleanly and status != 0:  # type: ignore[attr-defined]
            raise AssertionError(f"{server.description} exited {status} on Ctrl-C, not 0:\n{log}")

    def close(self, check: bool = True) -> None:
        """
        Stop every server (checking how each exits, if C{check}) and
        remove the directory.
        """
        try:
            while self.servers:
                self.stop(self.servers[0], check)
        finally:
            while self.servers:
                self.stop(self.servers[0], check=False)
            self.directory.remove()


# Figures that change between runs, compared by shape: a name, which shown
# lines it applies to, and the shape compared.


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return value


FIGURES: list[tuple[str, Callable[[str], bool], Callable[[str], Any]]] = [
    ("a STATS reply: uptime and counters", lambda line: line.startswith("{") and '"uptime":' in line, lambda line: _shape(json.loads(line))),
    (
        "a channel's epoch: 12 hex digits, new for each channel",
        lambda line: '"epoch":"' in line,
        lambda line: re.sub(r'"epoch":"[0-9a-f]{12}"', '"epoch":"(12 hex digits)"', line),
    ),
]


def comparable(line: str) -> Any:
    for _, applies, shape in FIGURES:
        if applies(line):
            try:
                return shape(line)
            except ValueError:
                return line
    return line


# Command lines of sh blocks: the first entry whose pattern matches says how
# a line is run.


NOT_RUN = {
    "make test": "it runs the test suite this test is part of",
    "git clone": "it needs the network; the page's directory stands for the clone",
}


def notRun(page: Page, line: str, block: Block) -> None:
    """
    A command L{NOT_RUN} names: recorded, not run.
    """
    page.commands.append(line)


def daemon(page: Page, line: str, block: Block) -> None:
    """
    Start C{twistd ... jsonproto ...} in the background, as its user does
    in a terminal of its own.
    """
    original = line
    words = shlex.split(line, comments=True)
    env = dict(page.directory.env)
    while "=" in words[0] and not words[0].startswith(("-", "/", ".")):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    plugin = words.index("jsonproto")
    twistdOptions, options = words[1:plugin], words[plugin + 1 :]
    if not any(o == "--port" or o.startswith("--port=") for o in options):
        original += " --port tcp:3001:interface=127.0.0.1"
        words += ["--port", "tcp:3001:interface=127.0.0.1"]
    pidfile = "twistd.pid"
    for i, option in enumerate(twistdOptions):
        if option.startswith("--pidfile="):
            pidfile = option.partition("=")[2]
        elif option == "--pidfile":
            pidfile = twistdOptions[i + 1]
    daemonizes = not ({"-n", "--nodaemon"} & set(twistdOptions))
    if daemonizes and not pidfile:
        raise AssertionError(f"{block}: {line!r} daemonizes without a pid file: nothing could stop it")
    argv = [page.substitute(w) for w in words]
    if argv[0].startswith(".venv/"):
        argv[0] = os.path.join(page.directory.path, argv[0])
    # --redis names the port of a server the daemon connects to, not one it serves.
    served = CLIENT_OPTION.sub("", original)
    page.start(f"{block}: {line}", argv, served, env=env, pidfile=page.substitute(pidfile), daemonizes=daemonizes)


def redisServer(page: Page, line: str, block: Block) -> None:
    """
    C{redis-server ...}: a Redis for the page's channels, run as its user
    runs it in a terminal of its own.
    """
    argv = [page.substitute(w) for w in shlex.split(line, comments=True)]
    if shutil.which(argv[0]) is None:
        raise SkipTest(f"{block}: redis-server is not installed (Debian: apt-get install redis-server; .ci/run installs it)")
    page.start(f"{block}: {line}", argv, line)


def makeRun(page: Page, line: str, block: Block) -> None:
    """
    C{make run}: the daemon the Makefile's C{run} target starts.
    """
    with open(os.path.join(REPO, "Makefile")) as f:
        recipe = re.search(r"^run:.*\n\t(.*)", f.read(), re.M).group(1)  # type: ignore[union-attr]
    daemon(page, recipe.replace("$(BIN)", ".venv/bin"), block)


def onTerminal(page: Page, line: str, block: Block) -> None:
    status, shown = docrun.runOnTerminal(page.substitute(line), page.directory, TYPED)
    assert status == 0 and '"status":"OK"' in shown, f"{block}: {line!r} at a terminal exited {status}:\n{shown}"


def shellCommand(page: Page, line: str, block: Block) -> None:
    status, output = docrun.run(page.substitute(line), page.directory)
    assert status == 0, f"{block}: {line!r} exited {status}:\n{output}"


COMMANDS: list[tuple[re.Pattern[str], Callable[[Page, str, Block], None]]] = [
    *((re.compile(rf"^{re.escape(command)}\b"), notRun) for command in NOT_RUN),
    (re.compile(r"^make run\b"), makeRun),
    (re.compile(r"^redis-server\s"), redisServer),
    (re.compile(r"^(\w+=\S*\s+)*\S*twistd\s(.*\s)?jsonproto(\s|$)"), daemon),
    (re.compile(r"#\s*at a terminal"), onTerminal),
    (re.compile(""), shellCommand),
]


def commandLines(text: str) -> list[str]:
    """
    The command lines of an sh block: continuation lines joined, blank
    and comment lines dropped.
    """
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


# How each kind of block is run.


def shell(page: Page, block: Block) -> None:
    for line in commandLines(block.text):
        page.commands.append(line)
        for pattern, how in COMMANDS:
            if pattern.search(line):
                how(page, line, block)
                break


def console(page: Page, block: Block) -> None:
    examples: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            examples.append((line[2:], []))
        elif examples:
            examples[-1][1].append(line)
    assert examples, f"{block}: a console block shows commands, each after '$ '"
    for command, shown in examples:
        page.commands.append(command)
        _, output = docrun.run(page.substitute(command), page.directory)
        expected = [comparable(page.substitute(l).rstrip()) for l in shown]
        got = [comparable(l.rstrip()) for l in output.splitlines()]
        assert got == expected, f"{block}: $ {command}\nthe page shows:\n" + "\n".join(shown) + f"\nit printed:\n{output}"


def python(page: Page, block: Block) -> None:
    if FILE_HEADER.match(block.text):
        return  # a file, written when the page began
    page.commands.append(block.text)
    program = page.directory.write(f".example-{block.line}.py", page.substitute(block.text))
    argv = [os.path.join(page.directory.path, ".venv", "bin", "python"), program]
    ports = sorted({port for _, port, _ in SERVER_ENDPOINT.findall(block.text) if PORT.fullmatch(port)})
    if not ports:
        status, output = docrun.run(shlex.join(argv), page.directory)
        assert status == 0, f"{block}: the program exited {status}:\n{output}"
        return
    page.makeRoom(block.text)
    for name in ports:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", page.port(name)))
            taken.listen()
            status, output = docrun.run(shlex.join(argv), page.directory)
        assert status != 0 and len(output.splitlines()) == 1, (
            f"{block}: with port {name} taken, the program should print one line and exit non-zero; it exited {status}:\n{output}"
        )
    page.start(f"{block}: the program", argv, block.text, exitsCleanly=True)


def parseJSON(page: Page, block: Block) -> None:
    json.loads(block.text)


def showOnly(page: Page, block: Block) -> None:
    pass


def fragmentOnly(page: Page, block: Block) -> None:
    raise AssertionError(f"{block}: this kind cannot run here: mark it {FRAGMENT}")


KINDS: dict[str, Callable[[Page, Block], None]] = {
    "python": python,  # a file, or a program; see the module's docstring
    "console": console,  # commands after "$ ", each with the output it shows
    "sh": shell,  # commands, each must exit 0; twistd lines are servers
    "json": parseJSON,  # a JSON text: it must parse
    "ini": fragmentOnly,  # a systemd unit; see checkFragment
    "": showOnly,  # bytes, log lines, configuration
    "{eval-rst}": showOnly,  # Sphinx directives
    "{toctree}": showOnly,
}


def checkFragment(block: Block) -> None:
    """
    What can be checked of a block that cannot run alone.
    """
    if block.kind == "python":
        compile(block.text, str(block), "exec")
    for line in block.text.splitlines():
        if line.startswith("ExecStart=") and " jsonproto " in line:
            from jsonproto.daemon.tap import Options

            options = shlex.split(line.partition(" jsonproto ")[2])
            if not any(o.startswith("systemd:") for o in options):  # systemd's sockets exist only under systemd
                Options().parseOptions(options)


def runPage(path: str) -> None:
    """
    Run every block of one page, in order, in a directory of its own.
    """
    blocks = readBlocks(path)
    for block in blocks:
        assert block.kind in KINDS, f"{block}: no rule says how to run a {block.kind!r} block; add one to KINDS"
    page = Page(docrun.Directory())
    try:
        if not page.directory.importable():
            raise SkipTest("jsonproto is not installed in the environment running the tests")
        files = {}
        for block in blocks:
            header = FILE_HEADER.match(block.text)
            if block.kind == "python" and header and not block.fragment:
                files[header.group(1)] = block
                page.directory.write(header.group(1), page.substitute(block.text))
        for block in blocks:
            if block.fragment:
                checkFragment(block)
            else:
                KINDS[block.kind](page, block)
        for name, block in files.items():
            module = name.removesuffix(".py").replace("/", ".")
            assert any(module in c or name in c for c in page.commands), f"{block}: {name} is written, but no command of the page uses it"
    except BaseException:
        page.close(check=False)
        raise
    page.close()


class DocumentationExamplesTests(TestCase):
    """
    One test a page: every example on it runs as shown.
    """


for _path in PAGES:
    _name = "test_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(_path))[0])
    setattr(DocumentationExamplesTests, _name, lambda self, path=_path: runPage(path))


class HarnessTests(TestCase):
    """
    The rules the examples are held to, on pages made for the purpose.
    """

    def page(self, text: str) -> str:
        path = os.path.abspath(self.mktemp()) + ".md"
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_indentedBlock(self) -> None:
        """
        A block indented in a list item is run like any other.
        """
        page = self.page("- an item:\n\n  ```console\n  $ echo one\n  two\n  ```\n")
        self.assertRaisesRegex(AssertionError, "the page shows", runPage, page)

    def test_unknownKind(self) -> None:
        """
        A block of a kind the harness has no rule for fails, so no example
        goes untested by being spelled C{bash}.
        """
        page = self.page("```bash\necho hi\n```\n")
        self.assertRaisesRegex(AssertionError, "no rule says how to run a 'bash' block", runPage, page)

    def test_unmarkedUnit(self) -> None:
        """
        A systemd unit must say it is a fragment.
        """
        page = self.page("```ini\n[Service]\nExecStart=/bin/true\n```\n")
        self.assertRaisesRegex(AssertionError, "cannot run here: mark it <!-- fragment -->", runPage, page)

    def test_fragmentNotRun(self) -> None:
        """
        A marked fragment is compiled, not run.
        """
        runPage(self.page(f"{FRAGMENT}\n```python\nraise SystemExit(1)\n```\n"))
        page = self.page(f"{FRAGMENT}\n```python\ndef broken(:\n```\n")
        self.assertRaises(SyntaxError, runPage, page)

    def test_outputCompared(self) -> None:
        """
        A console example prints what the page shows.
        """
        runPage(self.page("```console\n$ echo 3001\n3001\n```\n"))
        page = self.page("```console\n$ echo one\ntwo\n```\n")
        self.assertRaisesRegex(AssertionError, "the page shows", runPage, page)

    def test_shellFails(self) -> None:
        """
        A command of an sh block that fails fails the page.
        """
        page = self.page("```sh\nfalse   # says so\n```\n")
        self.assertRaisesRegex(AssertionError, "exited 1", runPage, page)

    def test_unusedFile(self) -> None:
        """
        A handlers module that no command uses is an example nobody runs.
        """
        page = self.page("```python\n# myapp/unused.py\ndef register(dispatcher):\n    pass\n```\n")
        self.assertRaisesRegex(AssertionError, "no command of the page uses it", runPage, page)

    def test_serverIgnoringListenFailure(self) -> None:
        """
        A program that serves but goes on when its port is taken fails:
        its users would be left with a process serving nothing.
        """
        program = (
            "from twisted.internet import endpoints, reactor\n"
            "from jsonproto import JSONServerFactory\n"
            'endpoints.serverFromString(reactor, "tcp:3001").listen(JSONServerFactory())\n'
            "reactor.callLater(0.5, reactor.stop)\n"
            "reactor.run()\n"
        )
        page = self.page(f"```python\n{program}```\n")
        self.assertRaisesRegex(AssertionError, "with port 3001 taken", runPage, page)

    def test_serverDies(self) -> None:
        """
        A server that dies while its page still uses it fails the page.
        """
        page = Page(docrun.Directory())
        self.addCleanup(page.close, check=False)
        daemon(page, ".venv/bin/twistd -n jsonproto", Block(self.page(""), 1, "sh", "", False))
        [server] = page.servers
        server.process.kill()
        server.process.wait(timeout=docrun.STOP_SECONDS)
        self.assertRaisesRegex(AssertionError, "before the page was done with it", page.close)

    def test_redisServer(self) -> None:
        """
        A redis-server line starts a Redis on the page's port, which the
        page's later commands talk to, and which is stopped when the page
        ends.
        """
        if shutil.which("redis-server") is None:
            raise SkipTest("redis-server is not installed (Debian: apt-get install redis-server)")
        page = Page(docrun.Directory())
        self.addCleanup(page.close, check=False)
        shell(page, Block(self.page(""), 1, "sh", 'redis-server --port 3379 --save ""\n', False))
        [server] = page.servers
        with socket.create_connection(("127.0.0.1", page.ports["3379"]), timeout=5) as client:
            client.sendall(b"PING\r\n")
            self.assertEqual(client.recv(7), b"+PONG\r\n")
        page.close()
        self.assertFalse(server.running())

    def test_figuresByShape(self) -> None:
        """
        A STATS reply is compared by its shape; any other reply exactly.
        """
        shown = '{"status":"OK","uptime":2.1,"connections":{"active":1}}'
        self.assertEqual(comparable(shown), comparable('{"status":"OK","uptime":0.4,"connections":{"active":3}}'))
        self.assertNotEqual(comparable(shown), comparable('{"status":"OK","uptime":0.4,"connections":{"open":3}}'))
        self.assertNotEqual(comparable('{"status":"OK","result":30}'), comparable('{"status":"OK","result":31}'))
        publication = '{"type":"PUBLICATION","channel":"a","data":1,"offset":1,"epoch":"%s"}'
        self.assertEqual(comparable(publication % "5be952349b81"), comparable(publication % "9f2c41d07a3e"))
        self.assertNotEqual(comparable(publication % "5be952349b81"), comparable(publication.replace(":1,", ":2,") % "9f2c41d07a3e"))

    def test_substitution(self) -> None:
        """
        The page's ports become free ports, the same one each time; server
        endpoints listen on 127.0.0.1 only; system paths are the page's.
        """
        page = Page(docrun.Directory())
        self.addCleanup(page.close)
        text = page.substitute("--port tcp:3001 --echo tcp:3000:interface=::1 --pidfile=/run/j.pid localhost:3001 2**14 65536")
        one, zero = page.ports["3001"], page.ports["3000"]
        self.assertEqual(
            text, f"--port tcp:{one}:interface=127.0.0.1 --echo tcp:{zero}:interface=::1 --pidfile=j.pid localhost:{one} 2**14 65536"
        )


class DocstringRenderingTests(TestCase):
    def test_epytext(self) -> None:
        """
        The API page renders the docstrings' epytext: inline markup (braces
        inside it balanced, running over line breaks) and @-fields.
        """
        import importlib.util

        spec = importlib.util.spec_from_file_location("docsconf", os.path.join(REPO, "docs", "conf.py"))
        assert spec is not None and spec.loader is not None
        conf = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(conf)
        self.assertEqual(
            conf.epytextToRest(
                [
                    'C{{"type":"SUM"}} gives L{Reply}, I{not} B{None}; C{"Internal',
                    'error"}.',
                    "",
                    "@param message: The message.",
                    "@return: The reply.",
                    "@raise RequestError: For a bad one.",
                ]
            ),
            [
                '``{"type":"SUM"}`` gives :py:obj:`Reply`, *not* **None**; ``"Internal',
                'error"``.',
                "",
                ":param message: The message.",
                ":returns: The reply.",
                ":raises RequestError: For a bad one.",
            ],
        )
