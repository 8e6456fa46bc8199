"""
The framings: how a byte stream, however it is split into reads, becomes
messages.
"""

from __future__ import annotations

import struct

from twisted.trial.unittest import SynchronousTestCase

from jsonproto.wire.framing import TOO_LONG, Int32Decoder, LineDecoder, encodeInt32


def drain(decoder: LineDecoder | Int32Decoder) -> list[object]:
    frames = []
    while (frame := decoder.nextFrame()) is not None:
        frames.append(frame)
    return frames


def decodeInReads(decoder: LineDecoder | Int32Decoder, *reads: bytes) -> list[object]:
    frames = []
    for data in reads:
        decoder.feed(data)
        frames.extend(drain(decoder))
    return frames


class LineDecoderTests(SynchronousTestCase):
    def test_lines(self) -> None:
        """
        Each \\n ends a message; a \\r before it is dropped; empty and
        all-blank lines are skipped.
        """
        decoder = LineDecoder(100)
        self.assertEqual(
            decodeInReads(decoder, b'{"a":1}\n\n{"b":2}\r\n \t\r\n\r\n{"c":3}\n'),
            [b'{"a":1}', b'{"b":2}', b'{"c":3}'],
        )

    def test_partial(self) -> None:
        """
        A message split across reads comes out once it is complete, and not
        before.
        """
        decoder = LineDecoder(100)
        self.assertEqual(decodeInReads(decoder, b'{"a"', b":1", b"}"), [])
        self.assertTrue(decoder.midMessage)
        self.assertEqual(decodeInReads(decoder, b"\n{"), [b'{"a":1}'])
        self.assertEqual(decoder.bufferedBytes, 1)

    def test_everySplit(self) -> None:
        """
        The same stream split into two or three reads at every pair of
        points gives the same messages, multi-byte characters intact.
        """
        stream = '{"name":"Zoë 😀"}\r\n\n{"b":2}\n'.encode()
        expected = ['{"name":"Zoë 😀"}'.encode(), b'{"b":2}']
        for i in range(len(stream) + 1):
            for j in range(i, len(stream) + 1):
                got = decodeInReads(LineDecoder(100), stream[:i], stream[i:j], stream[j:])
                self.assertEqual(got, expected, (i, j))

    def test_byteAtATime(self) -> None:
        """
        One byte per read works as well as one read for all.
        """
        stream = b'{"a":1}\r\n{"b":2}\n'
        self.assertEqual(
            decodeInReads(LineDecoder(100), *[bytes([b]) for b in stream]),
            [b'{"a":1}', b'{"b":2}'],
        )

    def test_limit(self) -> None:
        """
        A line of exactly the limit is a message; one byte more is TOO_LONG
        in its place, and the lines around it are untouched.  The \\r of
        \\r\\n does not count.
        """
        decoder = LineDecoder(5)
        self.assertEqual(
            decodeInReads(decoder, b"12345\n123456\r\nabcde\r\nxyz\n"),
            [b"12345", TOO_LONG, b"abcde", b"xyz"],
        )

    def test_longLineAcrossReads(self) -> None:
        """
        A line that grows past the limit over many reads gives one TOO_LONG
        as soon as it passes the limit, is discarded as it arrives rather
        than buffered, and the next line is read normally.
        """
        decoder = LineDecoder(10)
        self.assertEqual(decodeInReads(decoder, b"ok\n", b"x" * 8), [b"ok"])
        self.assertEqual(decodeInReads(decoder, b"x" * 8), [TOO_LONG])
        for _ in range(1000):
            self.assertEqual(decodeInReads(decoder, b"x" * 1000), [])
            self.assertEqual(decoder.bufferedBytes, 0)
        self.assertTrue(decoder.midMessage)
        self.assertEqual(decodeInReads(decoder, b"xx\nnext\n"), [b"next"])
        self.assertFalse(decoder.midMessage)

    def test_bufferBounded(self) -> None:
        """
        However a stream without newlines arrives, what is buffered stays
        within the limit plus one read.
        """
        decoder = LineDecoder(1000)
        for size in [1, 7, 999, 1001, 5000]:
            decoder.feed(b"y" * size)
            drain(decoder)
            self.assertLessEqual(decoder.bufferedBytes, 1001)


class Int32DecoderTests(SynchronousTestCase):
    def test_frames(self) -> None:
        """
        A 4-byte big-endian length, then that many bytes; an empty frame is
        a (zero-length) message.
        """
        stream = encodeInt32(b'{"a":1}') + encodeInt32(b"") + encodeInt32(b"\n\n")
        self.assertEqual(decodeInReads(Int32Decoder(100), stream), [b'{"a":1}', b"", b"\n\n"])

    def test_lengthBigEndian(self) -> None:
        """
        The prefix is the length in four bytes, most significant first:
        each byte counts with its weight, so 256 bytes after a length of
        2**8 are a message, and after one of 2**16 or 2**24 only its start.
        """
        body = bytes(range(256))
        for length in (2**8, 2**16, 2**24):
            decoder = Int32Decoder(2**25)
            frames = decodeInReads(decoder, struct.pack("!I", length) + body)
            self.assertEqual((frames, decoder.partialBytes), ([body], 0) if length == 256 else ([], 260), length)

    def test_encodeAnyLength(self) -> None:
        """
        A message of any length is framed with its length: the same framing
        for short messages as for long.
        """
        for size in (0, 1, 255, 256, 1023, 1024, 1025, 70_000):
            payload = b"x" * size
            self.assertEqual(encodeInt32(payload), struct.pack("!I", size) + payload, size)

    def test_everySplit(self) -> None:
        """
        The same stream split into three reads at every pair of points
        gives the same messages.
        """
        payloads = ['{"name":"Zoë 😀"}'.encode(), b"{}", b'{"b":2}']
        stream = b"".join(encodeInt32(p) for p in payloads)
        for i in range(len(stream) + 1):
            for j in range(i, len(stream) + 1):
                got = decodeInReads(Int32Decoder(100), stream[:i], stream[i:j], stream[j:])
                self.assertEqual(got, payloads, (i, j))

    def test_midMessage(self) -> None:
        """
        Only an unfinished frame counts as mid-message; complete frames
        not yet taken do not.
        """
        decoder = Int32Decoder(100)
        self.assertFalse(decoder.midMessage)
        decoder.feed(encodeInt32(b"ab") + encodeInt32(b"cd"))
        self.assertFalse(decoder.midMessage)
        decoder.feed(b"\x00\x00")
        self.assertTrue(decoder.midMessage)
        decoder.feed(b"\x00\x02x")
        self.assertTrue(decoder.midMessage)
        decoder.feed(b"y")
        self.assertFalse(decoder.midMessage)

    def test_limit(self) -> None:
        """
        A frame of exactly the limit is a message.
        """
        self.assertEqual(decodeInReads(Int32Decoder(5), encodeInt32(b"12345")), [b"12345"])

    def test_lengthOverLimit(self) -> None:
        """
        A length over the limit is refused from its 4-byte prefix alone,
        before any body is buffered; nothing after it is a message, not even
        a well-formed frame.
        """
        decoder = Int32Decoder(5)
        frames = decodeInReads(
            decoder, encodeInt32(b"ok"), struct.pack("!I", 6), b"x" * 6, encodeInt32(b"later")
        )
        self.assertEqual(frames, [b"ok", TOO_LONG])
        self.assertEqual(decoder.bufferedBytes, 0)
        decoder.feed(b"\x00" * 1_000_000)
        self.assertEqual(decoder.bufferedBytes, 0)

    def test_hugeLengthNotBuffered(self) -> None:
        """
        A 4 GiB length is refused at once.
        """
        self.assertEqual(decodeInReads(Int32Decoder(1024), b"\xff\xff\xff\xff"), [TOO_LONG])

    def test_bufferReleased(self) -> None:
        """
        Consumed frames do not stay in the buffer.
        """
        decoder = Int32Decoder(100)
        for _ in range(1000):
            decoder.feed(encodeInt32(b"x" * 50) + encodeInt32(b"y" * 50)[:10])
            drain(decoder)
            decoder.feed(encodeInt32(b"y" * 50)[10:])
            drain(decoder)
        self.assertEqual(decoder.bufferedBytes, 0)
        self.assertEqual(decoder.partialBytes, 0)
