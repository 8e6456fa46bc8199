"""
What each C{jsonproto} command does, once its command line is parsed
(L{jsonproto.tools.cli}): each takes the parsed arguments and the three
standard streams, and returns the exit status.

@raise CommandError: For what the user must hear about in one line.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
from typing import Any, Callable, TextIO

from jsonproto.client import Client
from jsonproto.client.subscriber import Subscriber
from jsonproto.tools import channels
from jsonproto.tools.send import (
    EXIT_ERROR_REPLY,
    EXIT_OK,
    Arguments,
    CommandError,
    InputLines,
    Session,
    parseRequest,
)


def connect(args: argparse.Namespace, make: Callable[..., Any] = Client, **options: Any) -> Any:
    """
    A L{Client} (or what C{make} makes with the same arguments: a
    L{Subscriber}) for the endpoint and options given.

    @raise CommandError: It could not connect, saying why in a line.
    """
    endpoint = args.endpoint
    where = endpoint["unixPath"] or f"{endpoint['host']}:{endpoint['port']}"
    try:
        return make(
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
            maxReplySize=args.max_reply_size,
            **options,
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


def send(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    source: Arguments | InputLines
    if args.messages:
        # Every argument is checked before anything is sent.
        source = Arguments([parseRequest(m, f"argument {i}") for i, m in enumerate(args.messages, 1)])
        interactive = False
    else:
        interactive = stdin.isatty()
    oneWay = frozenset(args.one_way)
    with connect(args) as client:
        if args.messages:
            return Session(client, out, err, args.timeout, oneWay=oneWay).run(source)
        if interactive:
            err.write(f"connected to {args.endpoint['text']}; type a JSON request per line, end with Ctrl-D\n")
            session = Session(client, out, err, args.timeout, describe=lambda n: "that", keepGoing=True, oneWay=oneWay)
            return session.run(InputLines(stdin, prompt=err))
        return Session(client, out, err, args.timeout, oneWay=oneWay).run(InputLines(stdin))


def subscribe(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    follow = channels.Follow(out, err, count=args.count)
    with connect(args, Subscriber, sleep=channels.sleep, notify=follow.notice) as subscriber:
        return follow.run(subscriber, args.channels)


def publish(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    message = {"type": "PUBLISH", "channel": args.channel, "data": args.data}
    with connect(args) as client:
        return Session(client, out, err, args.timeout).run(Arguments([message]))


def cert(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    from jsonproto.tools.certs import CertificateError, keyPathFor, writeCertificate

    if args.make_ca and args.usage is not None:
        raise CommandError("--usage is for the certificates a CA signs, not for the CA (--make-ca)")
    usage = args.usage or "server"
    keyPath = args.key_output or keyPathFor(args.output)
    try:
        writeCertificate(
            args.output, args.names, days=args.days, ca=args.ca, caKey=args.ca_key,
            isCA=args.make_ca, keyPath=keyPath, usage=usage,
        )
    except CertificateError as e:
        raise CommandError(str(e)) from None
    except OSError as e:
        raise CommandError(f"cannot write {e.filename}: {e.strerror}") from None
    kind = "certificate authority" if args.make_ca else f"{usage} certificate"
    signer = f"signed by {args.ca}" if args.ca else "self-signed"
    err.write(
        f"wrote a {kind} for {', '.join(args.names)} ({signer}, {args.days} days) to {args.output}, "
        f"and its private key to {keyPath}: keep the key where only its owner can read it\n"
    )
    return EXIT_OK


def bench(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    from jsonproto.tools.bench import Benchmark, ReplyTooLarge, Settings, describe

    endpoint = args.endpoint
    if args.message_file:
        try:
            with open(args.message_file, encoding="utf-8") as f:
                text = f.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise CommandError(f"cannot read {args.message_file}: {getattr(e, 'strerror', None) or e}") from None
        parseRequest(text, args.message_file)
    else:
        text = json.dumps(args.message, ensure_ascii=False, separators=(",", ":"))
    settings = Settings(
        host=endpoint["host"], port=endpoint["port"], tls=endpoint["tls"], ca=args.ca,
        conns=args.conns, pipeline=args.pipeline, duration=args.duration, warmup=args.warmup,
        framing=args.framing, message=text.encode("utf-8"), serverPid=args.server_pid,
        maxReplySize=args.max_reply_size,
    )
    try:
        summary = Benchmark(settings).run()
    except ReplyTooLarge as e:
        raise CommandError(f"{e}; give a larger --max-reply-size to take it") from None
    except ssl.SSLError as e:
        raise CommandError(f"TLS failed: {e.reason or e}") from None
    except OSError as e:
        raise CommandError(f"the benchmark failed: {e.strerror or e}") from None
    out.write((json.dumps(summary) if args.json else describe(summary)) + "\n")
    return EXIT_OK if summary["errors"] == 0 and summary["closed"] == 0 else EXIT_ERROR_REPLY


def schema(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    from jsonproto.daemon.handlers import HandlersFailed, loadDispatcher
    from jsonproto.tools.schema import describe, write

    prepare = None
    if args.channels:
        from twisted.internet.task import Clock

        from jsonproto.channels.broker import Broker
        from jsonproto.channels.engine import MemoryEngine
        from jsonproto.channels.messages import register as registerChannels

        # The daemon's channels as --channels makes them, never started:
        # the modules can set their hooks, and the types are described.
        clock = Clock()
        broker = Broker(MemoryEngine(clock), clock)
        prepare = lambda dispatcher: registerChannels(dispatcher, broker)  # noqa: E731
    try:
        dispatcher = loadDispatcher(args.handlers, seedTypes=not args.no_seed_types, prepare=prepare)
    except HandlersFailed as e:
        raise CommandError(str(e)) from None
    document = describe(dispatcher, title=args.title, version=args.version)
    text = write(document)
    if args.output is None:
        out.write(text)
        return EXIT_OK
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise CommandError(f"cannot write {args.output}: {e.strerror}") from None
    types = len(dispatcher.declarations)
    pushes = len(dispatcher.pushes)
    err.write(
        f"wrote the AsyncAPI {document['asyncapi']} document of {types} message type{'s' * (types != 1)}"
        f" and {pushes} push{'es' * (pushes != 1)} to {args.output}\n"
    )
    return EXIT_OK
