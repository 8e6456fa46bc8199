"""
The C{jsonproto} command: talk to a server, measure it, make development
certificates.

    jsonproto send tcp:localhost:3001 '{"type":"SUM","a":1,"b":2}'
    tail -f requests.jsonl | jsonproto send localhost:3001
    jsonproto send tls:localhost:3443 --ca cert.pem '{"type":"SUM","a":1,"b":2}'
    jsonproto subscribe localhost:3001 room:1 room:2
    jsonproto publish localhost:3001 room:1 '{"text":"hi"}'
    jsonproto bench localhost:3001 --conns 8 --pipeline 16
    jsonproto cert localhost 127.0.0.1 -o server.pem      (server.pem and server.key)
    jsonproto schema --handlers myapp.handlers > asyncapi.json

C{send} prints each reply, and each message the server pushes, as one JSON
line as it arrives.  Its exit status: 0 when every reply is OK, 1 when any
reply is an error, 2 when it could not talk to the server at all (refused,
TLS failure, timeout, closed) or was given bad input.  Options are checked
before anything is sent: a bad one is a usage error, status 2.
C{subscribe} prints each publication as one JSON line as it arrives,
connecting again and resuming when the connection is lost; C{publish}
prints its reply, with the exit status of C{send}.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence, TextIO

from jsonproto.limits import Limits
from jsonproto.tools import channels, commands
from jsonproto.tools.arguments import (
    ENDPOINTS,
    parseEndpoint,
    positiveInteger,
    positiveSeconds,
    readableFile,
    request,
    runningProcess,
)
from jsonproto.tools.send import EXIT_FAILURE, CommandError


class UsageError(Exception):
    """
    The command line is wrong: one line saying how.
    """


class _Parser(argparse.ArgumentParser):
    """
    An C{ArgumentParser} whose errors are one line, pointing to C{--help}
    rather than repeating a usage summary of several lines, and raised, so
    that L{main} reports them on its own error stream and returns status 2
    as C{argparse} would exit with.
    """

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

def _checkTLSOptions(parser: argparse.ArgumentParser, args: argparse.Namespace, names: dict[str, str]) -> None:
    """
    TLS options need a C{tls:} endpoint, and C{--key} needs C{--cert}.
    """
    given = [option for attribute, option in names.items() if getattr(args, attribute, None) is not None]
    if given and not args.endpoint["tls"]:
        verb = "applies" if len(given) == 1 else "apply"
        parser.error(f"{' and '.join(given)} {verb} only to a tls:HOST:PORT endpoint, not {args.endpoint['text']!r}")
    if getattr(args, "key", None) is not None and getattr(args, "cert", None) is None:
        parser.error("--key names the key of a --cert; give --cert too")


CERT_DESCRIPTION = """\
Write a development certificate to one file and its private key to another.

  jsonproto cert localhost 127.0.0.1 -o server.pem        server.pem and server.key, self-signed
  jsonproto cert "My devices CA" --make-ca -o ca.pem      ca.pem and ca.key: a CA
  jsonproto cert localhost --ca ca.pem -o server.pem      a server certificate the CA signs
  jsonproto cert sensor-17 --ca ca.pem --usage client -o sensor-17.pem

Clients get certificates (server.pem, ca.pem); keys stay with their owners.
"""


SCHEMA_DESCRIPTION = """\
Write the AsyncAPI 3.0 document that describes a service's messages, with a
JSON Schema (draft 2020-12) for each: every request, reply and error reply
of the seed's types and of the --handlers modules' types, the one-way types
and the pushes they declare.  The modules are imported as twistd jsonproto
--handlers imports them (PYTHONPATH=. for modules in this directory).

examples:
  jsonproto schema > asyncapi.json
  PYTHONPATH=. jsonproto schema --handlers myapp.handlers -o asyncapi.json
  jsonproto schema --handlers myapp.chat --handlers myapp.ingest --title "Devices" --version 2.1
  PYTHONPATH=. jsonproto schema --channels --no-seed-types --handlers lobby.handlers
"""


SEND_DESCRIPTION = """\
Send requests to a jsonproto server; print each reply, and each message the
server pushes, as one JSON line the moment it arrives.

Requests come from the command line, or one JSON object per line from
standard input, each sent as soon as it is read, one at a time (the next
once the reply to the one before is in); at a terminal, with a prompt.

examples:
  jsonproto send localhost:3001 '{"type":"SUM","a":1,"b":2}' '{"type":"GREETING","name":"Zoë"}'
  printf '%s\\n' '{"type":"SUM","a":1,"b":2}' | jsonproto send tcp:localhost:3001
  tail -f requests.jsonl | jsonproto send localhost:3001
  jsonproto send tls:localhost:3443 --ca ca.pem '{"type":"SUM","a":1,"b":2}'
  jsonproto send localhost:3002 --framing int32 '{"type":"SUM","a":1,"b":2}'
  jsonproto send localhost:3001          (at a terminal: a prompt, a request per line)
"""

SEND_EPILOG = """\
exit status:
  0  every reply was OK
  1  at least one reply was an error (all are printed)
  2  a bad option or request, or it could not talk to the server (refused,
     TLS failure, no reply within --timeout, closed by the server)
"""

BENCH_DESCRIPTION = """\
Measure a server's throughput and latency: --conns connections, each with
--pipeline requests in flight, for --duration seconds after --warmup.
Error replies and connections the server closes are counted and reported.

examples:
  jsonproto bench localhost:3001
  jsonproto bench localhost:3001 --conns 8 --pipeline 32 --duration 10 --json
  jsonproto bench tls:localhost:3443 --ca ca.pem --server-pid "$(cat twistd.pid)"
"""

BENCH_EPILOG = """\
exit status: 0 every reply OK; 1 an error reply or a connection closed by
the server; 2 a bad option, or it could not connect.
"""

SUBSCRIBE_DESCRIPTION = """\
Subscribe to channels; print each publication as one JSON line the moment
it arrives (the server's PUBLICATION message, and MISSED when the server
dropped some for a slow reader), flushed, for pipes.

When the connection is lost, it connects again (waiting longer after each
failed attempt, up to 30 seconds, with jitter), subscribes again, and
resumes after the last publication it printed: none is printed twice or
out of order.  Notices (connection lost, resumed, or a channel that cannot
be resumed and must be resynced) go to standard error.

examples:
  jsonproto subscribe localhost:3001 room:1
  jsonproto subscribe localhost:3001 room:1 room:2 --count 10
  jsonproto subscribe tls:localhost:3443 --ca ca.pem prices | jq .data
"""

SUBSCRIBE_EPILOG = """\
exit status:
  0  --count publications were printed, or it was interrupted (Ctrl-C)
  1  the server refused a channel (not allowed, too many subscriptions, or
     a server that does not serve channels)
  2  a bad option; the first connection failed (refused, TLS failure), or
     no reply to a SUBSCRIBE within --timeout; or a message longer than
     --max-reply-size
"""

PUBLISH_DESCRIPTION = """\
Publish DATA (any JSON value) to a channel; print the server's reply (the
publication's offset and epoch) as one JSON line.

examples:
  jsonproto publish localhost:3001 room:1 '{"text":"hello"}'
  jsonproto publish localhost:3001 prices 101.5
  jsonproto publish tls:localhost:3443 --ca ca.pem room:1 '"hi"'
"""

PUBLISH_EPILOG = """\
exit status: 0 published; 1 the server refused (not allowed, channels
unavailable, ...); 2 a bad option, or it could not talk to the server.
"""

_FORMATTER = argparse.RawDescriptionHelpFormatter
_MAX_REPLY_HELP = f"the longest reply taken, in bytes (default {Limits.maxMessageSize}, the daemon's default --max-message-size)"


def _connectionOptions(command: argparse.ArgumentParser, run: Callable[..., int], timeoutHelp: str) -> None:
    """
    The options of every command that talks to a server as a client:
    framing, timeout, the longest reply, TLS.
    """
    command.add_argument("--framing", choices=["line", "int32"], default="line", help="the server's framing (default line)")
    command.add_argument("--timeout", type=positiveSeconds, default=10.0, metavar="SECONDS", help=timeoutHelp)
    command.add_argument("--max-reply-size", type=positiveInteger, default=Limits.maxMessageSize, metavar="BYTES", help=_MAX_REPLY_HELP)
    command.add_argument("--ca", type=readableFile, metavar="FILE", help="trust the certificates in this PEM file instead of the system's (tls: only)")
    command.add_argument("--cert", type=readableFile, metavar="FILE", help="client certificate (and key) PEM file, for mutual TLS (tls: only)")
    command.add_argument("--key", type=readableFile, metavar="FILE", help="client key PEM file, if not in --cert")
    command.add_argument("--server-name", metavar="NAME", help="the name the server's certificate must carry (default: HOST)")
    command.set_defaults(run=run, parser=command, tlsOptions={"ca": "--ca", "cert": "--cert", "key": "--key", "server_name": "--server-name"})


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="jsonproto", description="Talk to jsonproto servers, measure them, make development certificates, describe a service.",
        epilog="Run 'jsonproto COMMAND --help' for a command's options and examples.", formatter_class=_FORMATTER,
    )
    from jsonproto import __version__

    top.add_argument("--version", action="version", version=f"jsonproto {__version__}")
    subcommands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = subcommands.add_parser(
        "send", help="send requests, print replies and pushes", description=SEND_DESCRIPTION,
        epilog=SEND_EPILOG, formatter_class=_FORMATTER,
    )
    s.add_argument("endpoint", type=parseEndpoint, help=ENDPOINTS)
    s.add_argument("messages", nargs="*", metavar="JSON", help="requests; without any, JSON lines from standard input")
    s.add_argument("--one-way", action="append", default=[], metavar="TYPE",
                   help="a one-way type of the server: its messages are sent without waiting for a reply (repeat for more)")
    _connectionOptions(s, run=commands.send, timeoutHelp="seconds to wait for connecting and for each reply (default 10)")

    u = subcommands.add_parser(
        "subscribe", help="print publications as they arrive", description=SUBSCRIBE_DESCRIPTION,
        epilog=SUBSCRIBE_EPILOG, formatter_class=_FORMATTER,
    )
    u.add_argument("endpoint", type=parseEndpoint, help=ENDPOINTS)
    u.add_argument("channels", nargs="+", type=channels.channelName, metavar="CHANNEL", help="the channels to subscribe to")
    u.add_argument("--count", type=positiveInteger, metavar="N", help="exit after N publications (default: run until interrupted)")
    _connectionOptions(u, run=commands.subscribe, timeoutHelp="seconds to wait for each attempt to connect and each SUBSCRIBE reply (default 10)")

    p = subcommands.add_parser(
        "publish", help="publish to a channel, print the reply", description=PUBLISH_DESCRIPTION,
        epilog=PUBLISH_EPILOG, formatter_class=_FORMATTER,
    )
    p.add_argument("endpoint", type=parseEndpoint, help=ENDPOINTS)
    p.add_argument("channel", type=channels.channelName, metavar="CHANNEL", help="the channel to publish to")
    p.add_argument("data", type=channels.publication, metavar="DATA", help="the data to publish, as JSON (any value)")
    _connectionOptions(p, run=commands.publish, timeoutHelp="seconds to wait for connecting and for the reply (default 10)")

    b = subcommands.add_parser(
        "bench", help="measure a server's throughput and latency", description=BENCH_DESCRIPTION,
        epilog=BENCH_EPILOG, formatter_class=_FORMATTER,
    )
    b.add_argument("endpoint", type=parseEndpoint, help="tcp:HOST:PORT, tls:HOST:PORT or HOST:PORT")
    b.add_argument("--conns", type=positiveInteger, metavar="N", default=50, help="connections (default 50)")
    b.add_argument("--pipeline", type=positiveInteger, metavar="N", default=1, help="requests in flight per connection (default 1)")
    b.add_argument("--duration", type=positiveSeconds, metavar="SECONDS", default=5.0, help="seconds measured (default 5)")
    b.add_argument("--warmup", type=positiveSeconds, metavar="SECONDS", default=1.0, help="seconds of load before measuring (default 1)")
    b.add_argument("--framing", choices=["line", "int32"], default="line", help="the server's framing (default line)")
    message = b.add_mutually_exclusive_group()
    message.add_argument("--message", type=request, metavar="JSON", default={"type": "SUM", "a": 10, "b": 20}, help='the request, as JSON (default {"type":"SUM","a":10,"b":20})')
    message.add_argument("--message-file", type=readableFile, metavar="FILE", help="read the request from this file (for large ones)")
    b.add_argument("--max-reply-size", type=positiveInteger, default=Limits.maxMessageSize, metavar="BYTES", help=_MAX_REPLY_HELP)
    b.add_argument("--ca", type=readableFile, metavar="FILE", help="trust the certificates in this PEM file (tls: only)")
    b.add_argument("--server-pid", type=runningProcess, metavar="PID", help="the server's process id, to compare CPU use")
    b.add_argument("--json", action="store_true", help="print one JSON summary")
    b.set_defaults(run=commands.bench, parser=b, tlsOptions={"ca": "--ca"})

    c = subcommands.add_parser(
        "cert",
        help="write a development certificate and its private key",
        description=CERT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("names", nargs="+", metavar="NAME", help="host names and IP addresses for the certificate (a CA: its name)")
    c.add_argument("-o", "--output", default="cert.pem", help="certificate file to write (default cert.pem); give clients this file, never the key")
    c.add_argument("--key-output", metavar="FILE", help="private key file to write (default: the --output name ending in .key)")
    c.add_argument("--days", type=int, default=30, help="validity in days, 1 to 36500 (default 30)")
    c.add_argument("--usage", choices=["server", "client"], help="what the certificate authenticates: a TLS server (default) or a client, for mutual TLS")
    c.add_argument("--ca", metavar="FILE", help="sign with this CA certificate (from --make-ca) instead of self-signing")
    c.add_argument("--ca-key", metavar="FILE", help="the CA's private key (default: the --ca name ending in .key)")
    c.add_argument("--make-ca", action="store_true", help="make a certificate authority, to sign server and client certificates")
    c.set_defaults(run=commands.cert)

    d = subcommands.add_parser(
        "schema", help="write the AsyncAPI document describing a service's messages",
        description=SCHEMA_DESCRIPTION, formatter_class=_FORMATTER,
    )
    d.add_argument("--handlers", action="append", default=[], metavar="MODULE", help="a module whose register(dispatcher) adds message types, as twistd jsonproto --handlers takes it; repeatable")
    d.add_argument("--channels", action="store_true", help="describe the service as twistd jsonproto --channels runs it: with SUBSCRIBE, PUBLISH and their pushes, and dispatcher.channels for the modules")
    d.add_argument("--no-seed-types", action="store_true", help="leave out GREETING and SUM, as twistd jsonproto --no-seed-types does")
    d.add_argument("-o", "--output", metavar="FILE", help="write the document to this file (default: standard output)")
    d.add_argument("--title", default="jsonproto service", help="the service's name in the document (default 'jsonproto service')")
    d.add_argument("--version", default="1.0.0", help="the service's version in the document (default 1.0.0)")
    d.set_defaults(run=commands.schema)
    return top


def _parse(top: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    # Requests may come after options (send ENDPOINT --ca F '{...}'), which
    # argparse leaves over; a request never starts with "-".
    args, extra = top.parse_known_args(argv)
    command = getattr(args, "parser", top)
    if extra:
        if args.command not in ("send", "subscribe") or any(e.startswith("-") for e in extra):
            command.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "send":
            args.messages += extra
        else:
            args.channels += [_argument(command, "CHANNEL", channels.channelName, e) for e in extra]
    if args.command in ("send", "bench", "subscribe", "publish"):
        _checkTLSOptions(command, args, args.tlsOptions)
        if args.command == "bench" and args.endpoint["unixPath"]:
            command.error("bench measures TCP and TLS endpoints, not unix:")
    return args


def _argument(command: argparse.ArgumentParser, name: str, convert: Callable[[str], Any], text: str) -> Any:
    """
    One positional argument argparse left over, checked as it would have.
    """
    try:
        return convert(text)
    except argparse.ArgumentTypeError as e:
        command.error(f"argument {name}: {e}")


def main(argv: Sequence[str] | None = None, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        args = _parse(parser(), argv)
    except UsageError as e:
        err.write(str(e))
        return EXIT_FAILURE
    try:
        return args.run(args, stdin, out, err)
    except CommandError as e:
        err.write(f"jsonproto: {e}\n")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except BrokenPipeError:
        # Whoever read the output stopped (| head): nothing more to say.
        return EXIT_FAILURE


def run() -> None:
    """
    The console script.
    """
    sys.exit(main())
