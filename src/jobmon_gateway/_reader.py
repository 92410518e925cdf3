"""The one reader every exchange feeds: a deadline on every read, a size limit, decoding.

Whichever transport moved the bytes (the SDK's own pools, a lent httpx
client, a mock), the answer's head is checked here and its body is
decompressed here, so the same bytes give the same verdict sync and async.
Nothing here does I/O.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable
from typing import Literal

__all__ = ["BodyReader", "Deadline", "Fault", "check_head"]

FaultKind = Literal["timeout", "too_large", "protocol", "decoding"]


class Fault(Exception):  # noqa: N818 - a finding, mapped before it escapes
    """Something wrong with an answer, found by the reader; mapped to a GatewayError."""

    def __init__(self, kind: FaultKind, message: str) -> None:
        super().__init__(message)
        self.kind: FaultKind = kind


class Deadline:
    """The moment an attempt must be over, to the last byte of the answer."""

    __slots__ = ("at", "timeout")

    def __init__(self, timeout: float, cap: float | None = None) -> None:
        self.timeout = timeout
        at = time.monotonic() + timeout
        self.at = at if cap is None else min(at, cap)

    def remaining(self) -> float:
        """Seconds left; raises a timeout ``Fault`` when none are."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise self.overdue()
        return left

    def passed(self) -> bool:
        """Whether the deadline has passed."""
        return time.monotonic() >= self.at

    def check(self) -> None:
        """Raise a timeout ``Fault`` if the deadline has passed."""
        if time.monotonic() >= self.at:
            raise self.overdue()

    def overdue(self) -> Fault:
        """The timeout ``Fault`` of this deadline."""
        return Fault("timeout", f"no complete answer within request_timeout={self.timeout:g}s")


def check_head(
    status: int, headers: Iterable[tuple[bytes, bytes]]
) -> tuple[str | None, int | None]:
    """Check an answer's status and framing headers (raw bytes); return its encoding and length.

    Refused alike whichever library parsed the head: a status outside
    100-599, both ``Content-Length`` and ``Transfer-Encoding`` (a smuggling
    vector), conflicting lengths, and a body on a 1xx, 204 or 304.
    """
    if not 200 <= status <= 599:
        # A 1xx can only precede an answer (101 would switch protocols).
        raise Fault("protocol", f"the server sent status {status} as its answer")
    encoding: str | None = None
    length: int | None = None
    chunked = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length":
            digits = value.strip()
            if not digits.isdigit() or len(digits) > 18:
                # "31, 31" is folded by some parsers and refused by others: refuse it.
                raise Fault("protocol", "the server sent an invalid Content-Length")
            this = int(digits)
            if length is not None and this != length:
                raise Fault("protocol", "the server sent conflicting Content-Length headers")
            length = this
        elif lowered == b"transfer-encoding":
            if chunked or value.strip().lower() != b"chunked":
                raise Fault("protocol", "the server sent a Transfer-Encoding other than chunked")
            chunked = True
        elif lowered == b"content-encoding":
            # Latin-1 maps every byte: a hostile value cannot fail to decode.
            text = value.strip().lower().decode("latin-1")
            encoding = text if encoding is None else f"{encoding},{text}"
    if chunked and length is not None:
        raise Fault("protocol", "the server sent both Content-Length and Transfer-Encoding")
    if (status < 200 or status in (204, 304)) and (chunked or length):
        raise Fault("protocol", f"the server sent a body with status {status}, which has none")
    return encoding, length


class BodyReader:
    """Collects an answer's body, decompressing it, and stops at ``limit`` bytes.

    ``feed`` takes raw bytes as they arrive; the decompressed size is
    checked as it grows, so a compression bomb is stopped after at most
    ``limit`` bytes of output, whatever its ratio.
    """

    __slots__ = ("_chunks", "_decoder", "_encoding", "_fed", "_limit", "_pending", "_size")

    def __init__(self, encoding: str | None, limit: int, length: int | None = None) -> None:
        if length is not None and length > limit and encoding in (None, "identity"):
            raise Fault("too_large", _too_large(limit))
        self._limit = limit
        self._size = 0
        self._fed = False
        self._pending = b""
        self._chunks: list[bytes] = []
        self._encoding = encoding
        if encoding in (None, "", "identity"):
            self._decoder: zlib._Decompress | None = None
        elif encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._decoder = None  # zlib-wrapped or raw: decided by the first bytes
        else:
            # We only ever ask for gzip and deflate.
            raise Fault("decoding", f"the server sent an unsupported Content-Encoding {encoding!r}")

    def feed(self, data: bytes) -> None:
        """Add raw bytes of the body."""
        if not data:
            return
        self._fed = True
        if self._encoding == "deflate" and self._decoder is None:
            # RFC 9110 deflate is zlib-wrapped; some servers send it raw. The
            # first two bytes tell, so wait for two (a chunk may hold one).
            data = self._pending + data
            if len(data) < 2:
                self._pending = data
                return
            self._pending = b""
            wrapped = (data[0] & 0x0F) == 8 and (data[0] * 256 + data[1]) % 31 == 0
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        decoder = self._decoder
        if decoder is None:
            self._add(data)
            return
        if decoder.eof:
            # zlib would keep every further byte in unused_data, uncounted.
            raise Fault("decoding", f"the {self._encoding} body has bytes after its end")
        room = self._limit - self._size
        try:
            out = decoder.decompress(data, room + 1)
        except zlib.error as exc:
            raise Fault("decoding", f"the {self._encoding} body is corrupt ({exc})") from None
        if decoder.unconsumed_tail or len(out) > room:
            raise Fault("too_large", _too_large(self._limit))
        if decoder.unused_data:
            raise Fault("decoding", f"the {self._encoding} body has bytes after its end")
        self._add(out)

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            raise Fault("too_large", _too_large(self._limit))
        self._chunks.append(data)

    def finish(self) -> bytes:
        """The whole decoded body; refuses a compressed stream that ends early."""
        if self._pending:
            raise Fault("decoding", f"the {self._encoding} body is corrupt (one byte)")
        decoder = self._decoder
        if decoder is not None and (self._chunks or decoder.unused_data or not decoder.eof):
            if not self._chunks and not decoder.eof and not self._fed:
                return b""  # an empty body, whatever its Content-Encoding says
            try:
                tail = decoder.flush()
            except zlib.error as exc:  # pragma: no cover - flush after decompress rarely fails
                raise Fault("decoding", f"the {self._encoding} body is corrupt ({exc})") from None
            if not decoder.eof:
                raise Fault("decoding", f"the {self._encoding} body ends before its stream does")
            if tail:
                self._add(tail)
        chunks = self._chunks
        if len(chunks) == 1 and type(chunks[0]) is bytes:
            return chunks[0]
        # A transport may hand out bytearray pieces; the body is always bytes.
        return b"".join(chunks)


def _too_large(limit: int) -> str:
    return f"the answer's body is larger than max_response_bytes={limit}"
