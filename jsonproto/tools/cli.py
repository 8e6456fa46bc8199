"""
The C{jsonproto} command: talk to a server, make development certificates.

    jsonproto send tcp:localhost:3001 '{"type":"SUM","a":1,"b":2}'
    printf '%s\\n' '{"type":"GREETING","name":"Zoë"}' | jsonproto send localhost:3001
    jsonproto send tls:localhost:3443 --ca cert.pem '{"type":"SUM","a":1,"b":2}'
    jsonproto send localhost:3001                      (a prompt, when standard input is a terminal)
    jsonproto cert localhost 127.0.0.1 -o key.pem

C{send} prints each reply as one JSON line.  Its exit status: 0 when every
reply is OK, 1 when any reply is an error, 2 when it could not talk to the
server at all (refused, TLS failure, timeout) or was given bad input.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
from typing import Any, Iterator, Sequence, TextIO

from jsonproto.client import Client, ProtocolError

EXIT_OK, EXIT_ERROR_REPLY, EXIT_FAILURE = 0, 1, 2


class CommandError(Exception):
    """
    Something the user must hear about in one line, ending the command.
    """


def parseEndpoint(text: str) -> dict[str, Any]:
    """
    C{tcp:HOST:PORT}, C{tls:HOST:PORT}, C{unix:PATH} or C{HOST:PORT}.
    """
    kind, _, rest = text.partition(":")
    if kind == "unix" and rest:
        return {"host": "", "port": 0, "unixPath": rest, "tls": False}
    if kind not in ("tcp", "tls"):
        kind, rest = "tcp", text
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise CommandError(f"{text!r} is not an endpoint: use tcp:HOST:PORT, tls:HOST:PORT, unix:PATH or HOST:PORT")
    return {"host": host, "port": int(port), "unixPath": None, "tls": kind == "tls"}


def _parseMessage(text: str, where: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except ValueError as e:
        raise CommandError(f"{where} is not JSON: {e}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise CommandError(f"{where} is not a request: it needs to be a JSON object with a string \"type\"")
    return message


def _connect(args: argparse.Namespace) -> Client:
    endpoint = parseEndpoint(args.endpoint)
    where = endpoint["unixPath"] or f"{endpoint['host']}:{endpoint['port']}"
    try:
        return Client(
            endpoint["host"],
            endpoint["port"],
            unixPath=endpoint["unixPath"],
            tls=endpoint["tls"],
            framing=args.framing,
            ca=args.ca,
            certificate=args.cert,
            privateKey=args.key,
            serverHostname=args.server_name,
            timeout=args.timeout,
        )
    except ssl.SSLCertVerificationError as e:
        raise CommandError(f"TLS verification of {args.server_name or endpoint['host']} failed: {e.verify_message or e}") from None
    except ssl.SSLError as e:
        raise CommandError(f"TLS with {where} failed: {e.reason or e}") from None
    except ConnectionRefusedError:
        raise CommandError(f"cannot connect to {where}: connection refused (is the server running?)") from None
    except socket.gaierror as e:
        raise CommandError(f"cannot find {endpoint['host']}: {e.strerror}") from None
    except TimeoutError:
        raise CommandError(f"cannot connect to {where}: no answer within {args.timeout:g} seconds") from None
    except OSError as e:
        raise CommandError(f"cannot connect to {where}: {e.strerror or e}") from None


def _exchange(client: Client, message: dict[str, Any], timeout: float) -> dict[str, Any]:
    try:
        return client.request(message)
    except TimeoutError:
        raise CommandError(f"no reply within {timeout:g} seconds") from None
    except ConnectionError:
        raise CommandError("the server closed the connection without replying") from None
    except ProtocolError as e:
        raise CommandError(str(e)) from None
    except OSError as e:
        raise CommandError(f"the connection failed: {e.strerror or e}") from None


def _batch(args: argparse.Namespace, lines: Iterator[tuple[str, str]], out: TextIO) -> int:
    messages = [_parseMessage(text, where) for text, where in lines]
    status = EXIT_OK
    with _connect(args) as client:
        for message in messages:
            reply = _exchange(client, message, args.timeout)
            out.write(json.dumps(reply, ensure_ascii=False, separators=(",", ":")) + "\n")
            if reply.get("status") != "OK":
                status = EXIT_ERROR_REPLY
    return status


def _interactive(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    status = EXIT_OK
    with _connect(args) as client:
        err.write(f"connected to {args.endpoint}; type a JSON request per line, end with Ctrl-D\n")
        while True:
            err.write("> ")
            err.flush()
            line = stdin.readline()
            if not line:
                return status
            if not line.strip():
                continue
            try:
                message = _parseMessage(line, "that")
            except CommandError as e:
                err.write(f"jsonproto: {e}\n")
                continue
            reply = _exchange(client, message, args.timeout)
            out.write(json.dumps(reply, ensure_ascii=False, separators=(",", ":")) + "\n")
            out.flush()
            if reply.get("status") != "OK":
                status = EXIT_ERROR_REPLY


def send(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    if args.messages:
        return _batch(args, ((m, f"argument {i}") for i, m in enumerate(args.messages, 1)), out)
    if stdin.isatty():
        return _interactive(args, stdin, out, err)
    lines = ((line, f"line {i}") for i, line in enumerate(stdin, 1) if line.strip())
    return _batch(args, lines, out)


def cert(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    from jsonproto.tools.certs import writeCertificate

    try:
        writeCertificate(args.output, args.names, days=args.days, ca=args.ca, isCA=args.make_ca)
    except (OSError, ValueError) as e:
        raise CommandError(f"cannot write {args.output}: {e}") from None
    kind = "certificate authority" if args.make_ca else "key and certificate"
    signer = f"signed by {args.ca}" if args.ca else "self-signed"
    err.write(f"wrote a {kind} for {', '.join(args.names)} ({signer}, {args.days} days) to {args.output}\n")
    return EXIT_OK


def bench(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    from jsonproto.tools.bench import Benchmark, Settings, describe

    endpoint = parseEndpoint(args.endpoint)
    if endpoint["unixPath"]:
        raise CommandError("bench measures TCP and TLS endpoints")
    if args.message_file:
        try:
            with open(args.message_file, encoding="utf-8") as f:
                text = f.read().strip()
        except OSError as e:
            raise CommandError(f"cannot read {args.message_file}: {e.strerror}") from None
    else:
        text = args.message
    _parseMessage(text, "the message")
    message = text.encode("utf-8")
    settings = Settings(
        host=endpoint["host"], port=endpoint["port"], tls=endpoint["tls"], ca=args.ca,
        conns=args.conns, pipeline=args.pipeline, duration=args.duration, warmup=args.warmup,
        framing=args.framing, message=message, serverPid=args.server_pid,
    )
    try:
        summary = Benchmark(settings).run()
    except ssl.SSLError as e:
        raise CommandError(f"TLS failed: {e.reason or e}") from None
    except OSError as e:
        raise CommandError(f"the benchmark failed: {e.strerror or e}") from None
    out.write((json.dumps(summary) if args.json else describe(summary)) + "\n")
    return EXIT_OK if summary["errors"] == 0 else EXIT_ERROR_REPLY


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="jsonproto", description="Talk to jsonproto servers.")
    from jsonproto import __version__

    top.add_argument("--version", action="version", version=f"jsonproto {__version__}")
    commands = top.add_subparsers(dest="command", required=True)

    s = commands.add_parser("send", help="send requests, print replies", description=__doc__.split("\n\n")[1])
    s.add_argument("endpoint", help="tcp:HOST:PORT, tls:HOST:PORT, unix:PATH or HOST:PORT")
    s.add_argument("messages", nargs="*", metavar="JSON", help="requests; without any, JSON lines from standard input")
    s.add_argument("--framing", choices=["line", "int32"], default="line")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for connecting and for each reply (default 10)")
    s.add_argument("--ca", help="trust the certificates in this PEM file instead of the system's")
    s.add_argument("--cert", help="client certificate (and key) PEM file, for mutual TLS")
    s.add_argument("--key", help="client key PEM file, if not in --cert")
    s.add_argument("--server-name", help="the name the server's certificate must carry (default: HOST)")
    s.set_defaults(run=send)

    b = commands.add_parser("bench", help="measure a server's throughput and latency")
    b.add_argument("endpoint", help="tcp:HOST:PORT, tls:HOST:PORT or HOST:PORT")
    b.add_argument("--conns", type=int, default=50, help="connections (default 50)")
    b.add_argument("--pipeline", type=int, default=1, help="requests in flight per connection (default 1)")
    b.add_argument("--duration", type=float, default=5.0, help="seconds measured (default 5)")
    b.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring (default 1)")
    b.add_argument("--framing", choices=["line", "int32"], default="line")
    b.add_argument("--message", default='{"type":"SUM","a":10,"b":20}', help="the request, as JSON")
    b.add_argument("--message-file", help="read the request from this file (for large ones)")
    b.add_argument("--ca", help="trust the certificates in this PEM file (TLS)")
    b.add_argument("--server-pid", type=int, help="the server's process id, to compare CPU use")
    b.add_argument("--json", action="store_true", help="print one JSON summary")
    b.set_defaults(run=bench)

    c = commands.add_parser("cert", help="write a development key and certificate")
    c.add_argument("names", nargs="+", metavar="NAME", help="host names and IP addresses for the certificate")
    c.add_argument("-o", "--output", default="key.pem", help="PEM file to write, key then certificate (default key.pem)")
    c.add_argument("--days", type=int, default=30, help="validity (default 30)")
    c.add_argument("--ca", help="sign with this CA (a PEM from --make-ca) instead of self-signing")
    c.add_argument("--make-ca", action="store_true", help="make a certificate authority, for client certificates")
    c.set_defaults(run=cert)
    return top


def main(argv: Sequence[str] | None = None, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    top = parser()
    # Requests may come after options (send ENDPOINT --ca F '{...}'), which
    # argparse leaves over; a request never starts with "-".
    args, extra = top.parse_known_args(argv)
    if extra:
        if args.command != "send" or any(e.startswith("-") for e in extra):
            top.error(f"unrecognized arguments: {' '.join(extra)}")
        args.messages += extra
    try:
        return args.run(args, stdin, out, err)
    except CommandError as e:
        err.write(f"jsonproto: {e}\n")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE


def run() -> None:
    """
    The console script.
    """
    sys.exit(main())
