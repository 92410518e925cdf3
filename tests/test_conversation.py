"""The SDK's own HTTP/1.1 conversation, read by a hostile server: one verdict per answer.

The pools behind :class:`~jobmon_gateway.GatewayTransport` and
:class:`~jobmon_gateway.AsyncGatewayTransport` share one sans-IO
conversation. Each answer below is exact bytes from a raw loopback server;
its verdict (status, body, whether the connection was reused; or refused)
must be the same sync and async, whole or sent byte by byte, and — fed to
the conversation directly — however the bytes are cut into reads. Whatever
the verdict, the next request on the same client gets its own answer (never
a leftover of this one). h11 (the parser the conversation replaced) is the
oracle for what a well-formed answer means; where the SDK is deliberately
stricter (folded lines, listed lengths), that is not asserted against h11.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import random
import socket
import struct
import termios
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import h11
import httpcore
import httpx
import pytest

from hostile_server import HostileConnection, HostileServer, http_response
from jobmon_gateway import (
    AsyncGatewayTransport,
    ConfigurationError,
    GatewayError,
    GatewayTransport,
    Requester,
    ServerGateway,
    routes,
)
from jobmon_gateway._http11 import HEAD_LIMIT, Conversation

Mode = Literal["sync", "async"]
MODES: list[Mode] = ["sync", "async"]
Cut = Literal["whole", "bytes"]
CUTS: list[Cut] = ["whole", "bytes"]
TIMEOUT = 5.0  # a bound on a broken test, never reached by a passing one
NEXT = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnext"

Verdict = tuple[object, ...]
REFUSED: Verdict = ("refused",)


def ok(status: int = 200, body: bytes = b"ok", *, reused: bool = True) -> Verdict:
    """The verdict of an accepted answer."""
    return ("ok", status, body, reused)


@dataclass(frozen=True)
class Case:
    """Exact answer bytes and the verdict they must get.

    ``close``: the server closes the connection after sending them.
    ``end``: where the answer ends by its framing, when bytes follow it.
    ``well_formed``: h11 must read it the same way.
    """

    id: str
    data: bytes
    expect: Verdict
    method: str = "GET"
    close: bool = False
    end: int | None = None
    well_formed: bool = False


def case(
    id: str,
    data: bytes,
    expect: Verdict,
    *,
    method: str = "GET",
    close: bool = False,
    end: int | None = None,
    well_formed: bool = False,
) -> Case:
    return Case(id, data, expect, method, close, end, well_formed)


CL2 = b"Content-Length: 2\r\n"
TE = b"Transfer-Encoding: chunked\r\n"
CHUNKED_OK = b"2\r\nok\r\n0\r\n\r\n"


def sized_head(size: int, eol: bytes) -> bytes:
    """An answer whose head (status line through the empty line) is exactly ``size`` bytes."""
    start = b"HTTP/1.1 200 OK" + eol + b"Content-Length: 2" + eol + b"X-Pad: "
    return start + b"p" * (size - len(start) - 2 * len(eol)) + eol + eol + b"ok"


def sized_trailers(total: int) -> bytes:
    """A chunked answer whose trailer lines (each with its CRLF) are exactly ``total`` bytes."""
    lines, left = [], total
    while left:
        size = min(left, 1000)
        if 0 < left - size < 6:
            size -= 6
        lines.append(b"X-T: " + b"t" * (size - 7) + b"\r\n")
        left -= size
    body = b"2\r\nok\r\n0\r\n" + b"".join(lines) + b"\r\n"
    return b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n" + body


def chunk_line(size: int) -> bytes:
    """A chunked answer whose first chunk line (without its CRLF) is ``size`` bytes."""
    line = b"2;" + b"e" * (size - 2)
    return b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n" + line + b"\r\nok\r\n0\r\n\r\n"


_ONE_ANSWER = b"HTTP/1.1 200 OK\r\n" + CL2 + b"\r\nok"
_TWO_ANSWERS = _ONE_ANSWER + http_response(b"smuggled")

CASES = [
    # -- heads: line ends, whitespace, header lines ------------------------------------
    case("crlf", b"HTTP/1.1 200 OK\r\n" + CL2 + b"\r\nok", ok(), well_formed=True),
    case("bare-lf", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", ok(), well_formed=True),
    case("mixed-lf", b"HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nok", ok(), well_formed=True),
    case("no-ows", b"HTTP/1.1 200 OK\r\nContent-Length:2\r\n\r\nok", ok(), well_formed=True),
    case(
        "much-ows",
        b"HTTP/1.1 200 OK\r\nContent-Length: \t 2 \t \r\nX:  a b  \r\n\r\nok",
        ok(),
        well_formed=True,
    ),
    case(
        "empty-values",
        b"HTTP/1.1 200 OK\r\nX-Empty:\r\nX-Blank:  \r\n" + CL2 + b"\r\nok",
        ok(),
        well_formed=True,
    ),
    case(
        "obs-text",
        b"HTTP/1.1 200 \xe9t\xe9\r\nX: \xff\r\n" + CL2 + b"\r\nok",
        ok(),
        well_formed=True,
    ),
    case("no-reason", b"HTTP/1.1 200\r\n" + CL2 + b"\r\nok", ok(), well_formed=True),
    case("empty-reason", b"HTTP/1.1 200 \r\n" + CL2 + b"\r\nok", ok(), well_formed=True),
    case("http-1.2", b"HTTP/1.2 200 OK\r\n" + CL2 + b"\r\nok", ok(), well_formed=True),
    case("status-600", b"HTTP/1.1 600 X\r\n" + CL2 + b"\r\nok", ok(600), well_formed=True),
    case("obs-fold", b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n" + CL2 + b"\r\nok", REFUSED),
    case("obs-fold-tab", b"HTTP/1.1 200 OK\r\nX: a\r\n\tb\r\n" + CL2 + b"\r\nok", REFUSED),
    case("fold-first", b"HTTP/1.1 200 OK\r\n X: 1\r\n" + CL2 + b"\r\nok", REFUSED),
    case("space-before-colon", b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", REFUSED),
    case("tab-before-colon", b"HTTP/1.1 200 OK\r\nContent-Length\t: 2\r\n\r\nok", REFUSED),
    case("no-colon", b"HTTP/1.1 200 OK\r\nBad\r\n" + CL2 + b"\r\nok", REFUSED),
    case("empty-name", b"HTTP/1.1 200 OK\r\n: x\r\n" + CL2 + b"\r\nok", REFUSED),
    case("cr-in-value", b"HTTP/1.1 200 OK\r\nX: a\rb\r\n" + CL2 + b"\r\nok", REFUSED),
    case("nul-in-value", b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n" + CL2 + b"\r\nok", REFUSED),
    case("del-in-value", b"HTTP/1.1 200 OK\r\nX: a\x7fb\r\n" + CL2 + b"\r\nok", REFUSED),
    case("cr-cr-lf", b"HTTP/1.1 200 OK\r\nX: a\r\r\n" + CL2 + b"\r\nok", REFUSED),
    case("leading-crlf", b"\r\nHTTP/1.1 200 OK\r\n" + CL2 + b"\r\nok", REFUSED),
    # -- status lines ------------------------------------------------------------------
    case("http-2.0", b"HTTP/2.0 200 OK\r\n" + CL2 + b"\r\nok", REFUSED),
    case("http-lowercase", b"http/1.1 200 OK\r\n" + CL2 + b"\r\nok", REFUSED),
    case("two-digit-status", b"HTTP/1.1 20 OK\r\n" + CL2 + b"\r\nok", REFUSED),
    case("four-digit-status", b"HTTP/1.1 2000 OK\r\n" + CL2 + b"\r\nok", REFUSED),
    case("status-000", b"HTTP/1.1 000 OK\r\n" + CL2 + b"\r\nok", REFUSED),
    case("status-099", b"HTTP/1.1 099 OK\r\n" + CL2 + b"\r\nok", REFUSED),
    case("two-spaces", b"HTTP/1.1  200 OK\r\n" + CL2 + b"\r\nok", REFUSED),
    case("no-space", b"HTTP/1.1200 OK\r\n" + CL2 + b"\r\nok", REFUSED),
    # -- 1xx ---------------------------------------------------------------------------
    case(
        "100-then-200",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n" + CL2 + b"\r\nok",
        ok(),
        well_formed=True,
    ),
    case(
        "103-100-then-200",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
        b"HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\r\n" + CL2 + b"\r\nok",
        ok(),
        well_formed=True,
    ),
    case("101", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", REFUSED),
    case("1xx-then-eof", b"HTTP/1.1 100 Continue\r\n\r\n", REFUSED, close=True),
    # -- HTTP/1.0, Connection: close, close-delimited bodies -------------------------------
    case(
        "http-1.0-to-close",
        b"HTTP/1.0 200 OK\r\n\r\nok",
        ok(reused=False),
        close=True,
        well_formed=True,
    ),
    case(
        "http-1.0-length",
        b"HTTP/1.0 200 OK\r\n" + CL2 + b"\r\nok",
        ok(reused=False),
        well_formed=True,
    ),
    case(
        "http-1.0-keep-alive",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n" + CL2 + b"\r\nok",
        ok(reused=False),
        well_formed=True,
    ),
    case(
        "connection-close",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n" + CL2 + b"\r\nok",
        ok(reused=False),
        well_formed=True,
    ),
    case(
        "keep-alive-comma-close",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\n" + CL2 + b"\r\nok",
        ok(reused=False),
        well_formed=True,
    ),
    case(
        "keep-alive-comma-close-no-space",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive,CLOSE\r\n" + CL2 + b"\r\nok",
        ok(reused=False),
        well_formed=True,
    ),
    case(
        "two-connection-headers",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: Close\r\n" + CL2 + b"\r\nok",
        ok(reused=False),
        well_formed=True,
    ),
    case(
        "connection-closed-is-not-close",
        b"HTTP/1.1 200 OK\r\nConnection: closed\r\n" + CL2 + b"\r\nok",
        ok(),
        well_formed=True,
    ),
    case(
        "close-delimited",
        b"HTTP/1.1 200 OK\r\n\r\nok",
        ok(reused=False),
        close=True,
        well_formed=True,
    ),
    case(
        "close-delimited-empty",
        b"HTTP/1.1 200 OK\r\n\r\n",
        ok(body=b"", reused=False),
        close=True,
        well_formed=True,
    ),
    # -- Content-Length ----------------------------------------------------------------
    case(
        "length-zero",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ok(body=b""),
        well_formed=True,
    ),
    case("length-002", b"HTTP/1.1 200 OK\r\nContent-Length: 002\r\n\r\nok", ok(), well_formed=True),
    case(
        "length-twice-equal",
        b"HTTP/1.1 200 OK\r\n" + CL2 + CL2 + b"\r\nok",
        ok(),
        well_formed=True,
    ),
    case(
        "length-twice-unequal",
        b"HTTP/1.1 200 OK\r\n" + CL2 + b"Content-Length: 3\r\n\r\nok!",
        REFUSED,
    ),
    case("length-listed", b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", REFUSED),
    case("length-plus", b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", REFUSED),
    case("length-minus", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nok", REFUSED),
    case("length-hex", b"HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\nok", REFUSED),
    case("length-empty", b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\nok", REFUSED),
    case("length-letters", b"HTTP/1.1 200 OK\r\nContent-Length: 2a\r\n\r\nok", REFUSED),
    case("length-superscript", b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nok", REFUSED),
    case(
        "length-19-digits",
        b"HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\nok",
        REFUSED,
        close=True,
    ),
    case(
        "length-huge-then-eof",
        b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999999999\r\n\r\nok",
        REFUSED,
        close=True,
    ),
    case(
        "bytes-after-length",
        b"HTTP/1.1 200 OK\r\n" + CL2 + b"\r\nokXYZ",
        ok(reused=False),
        end=len(b"HTTP/1.1 200 OK\r\n" + CL2 + b"\r\nok"),
    ),
    case("two-answers-at-once", _TWO_ANSWERS, ok(reused=False), end=len(_ONE_ANSWER)),
    # -- chunked -----------------------------------------------------------------------
    case("chunked", b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n" + CHUNKED_OK, ok(), well_formed=True),
    case(
        "chunked-ext",
        b"HTTP/1.1 200 OK\r\n" + TE + b'\r\n2;a=b;c="d e"\r\nok\r\n0;x\r\n\r\n',
        ok(),
        well_formed=True,
    ),
    case(
        "chunked-ext-bws",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2 ; a=b\r\nok\r\n0\r\n\r\n",
        ok(),
    ),
    case(
        "chunked-upper-hex",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\nA\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n",
        ok(body=b"0123456789abcdefghijk"),
        well_formed=True,
    ),
    case(
        "chunked-te-casing-and-ows",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding:  Chunked \r\n\r\n" + CHUNKED_OK,
        ok(),
        well_formed=True,
    ),
    case(
        "chunked-16-digits",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n0000000000000002\r\nok\r\n0\r\n\r\n",
        ok(),
        well_formed=True,
    ),
    case(
        "chunked-17-digits",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n00000000000000002\r\nok\r\n0\r\n\r\n",
        REFUSED,
    ),
    case(
        "chunked-2-to-the-64",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n10000000000000000\r\nok\r\n0\r\n\r\n",
        REFUSED,
    ),
    case(
        "chunked-ffff-then-eof",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\nffffffffffffffff\r\nok",
        REFUSED,
        close=True,
    ),
    case(
        "chunked-trailers",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\r\nok\r\n0\r\nX-T: 1\r\nY:2\r\nZ:\r\n\r\n",
        ok(),
        well_formed=True,
    ),
    case(
        "chunked-trailer-space-before-colon",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\r\nok\r\n0\r\nX-T : 1\r\n\r\n",
        REFUSED,
    ),
    case(
        "chunked-trailer-no-colon",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\r\nok\r\n0\r\nbad\r\n\r\n",
        REFUSED,
    ),
    case(
        "chunked-trailer-folded",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\r\nok\r\n0\r\nX: a\r\n b\r\n\r\n",
        REFUSED,
    ),
    case("chunked-trailers-at-limit", sized_trailers(HEAD_LIMIT), ok(), well_formed=True),
    case("chunked-trailers-over-limit", sized_trailers(HEAD_LIMIT + 1), REFUSED),
    case(
        "chunked-trailer-line-20000",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\r\nok\r\n0\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
        REFUSED,
    ),
    case("chunk-line-1023", chunk_line(1023), ok(), well_formed=True),
    case("chunk-line-1100", chunk_line(1100), REFUSED),
    case("chunk-line-4000", chunk_line(4000), REFUSED),
    case(
        "chunk-data-then-junk",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\r\nokX0\r\n\r\n",
        REFUSED,
    ),
    case(
        "chunk-data-no-crlf",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\r\nok0\r\n\r\n",
        REFUSED,
    ),
    case(
        "chunk-data-bare-lf",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\r\nok\n0\r\n\r\n",
        REFUSED,
    ),
    case(
        "chunk-size-bare-lf",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\nok\r\n0\r\n\r\n",
        REFUSED,
    ),
    case(
        "last-chunk-bare-lf",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\r\nok\r\n0\n\r\n",
        REFUSED,
    ),
    case(
        "chunked-end-bare-lf",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\r\nok\r\n0\r\n\n",
        REFUSED,
    ),
    case(
        "chunked-trailer-bare-lf",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\r\nok\r\n0\r\nX: 1\n\r\n",
        REFUSED,
    ),
    case("chunk-size-empty", b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n\r\n" + CHUNKED_OK, REFUSED),
    case("chunk-size-minus", b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n-2\r\nok\r\n0\r\n\r\n", REFUSED),
    case("chunk-size-0x", b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n0x2\r\nok\r\n0\r\n\r\n", REFUSED),
    case(
        "chunk-size-leading-space",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n 2\r\nok\r\n0\r\n\r\n",
        REFUSED,
    ),
    case(
        "te-gzip-chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + CHUNKED_OK,
        REFUSED,
    ),
    case(
        "te-chunked-chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n" + CHUNKED_OK,
        REFUSED,
    ),
    case("te-twice", b"HTTP/1.1 200 OK\r\n" + TE + TE + b"\r\n" + CHUNKED_OK, REFUSED),
    case(
        "te-identity",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n" + CL2 + b"\r\nok",
        REFUSED,
    ),
    case("te-then-length", b"HTTP/1.1 200 OK\r\n" + TE + CL2 + b"\r\n" + CHUNKED_OK, REFUSED),
    case("length-then-te", b"HTTP/1.1 200 OK\r\n" + CL2 + TE + b"\r\n" + CHUNKED_OK, REFUSED),
    case(
        "bytes-after-chunked",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n" + CHUNKED_OK + b"X",
        ok(reused=False),
        end=len(b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n" + CHUNKED_OK),
    ),
    # -- HEAD, 204, 304: no body, whatever the head says -------------------------------------
    case(
        "head-with-length",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
        ok(body=b""),
        method="HEAD",
        well_formed=True,
    ),
    case(
        "head-with-chunked",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n",
        ok(body=b""),
        method="HEAD",
        well_formed=True,
    ),
    case(
        "head-without-framing",
        b"HTTP/1.1 200 OK\r\n\r\n",
        ok(body=b""),
        method="HEAD",
        well_formed=True,
    ),
    case(
        "head-with-a-body-sent",
        b"HTTP/1.1 200 OK\r\n" + CL2 + b"\r\nok",
        ok(body=b"", reused=False),
        method="HEAD",
        end=len(b"HTTP/1.1 200 OK\r\n" + CL2 + b"\r\n"),
    ),
    case("204", b"HTTP/1.1 204 No Content\r\n\r\n", ok(204, b""), well_formed=True),
    case(
        "204-length-0",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        ok(204, b""),
        well_formed=True,
    ),
    case(
        "204-length-2-unsent",
        b"HTTP/1.1 204 No Content\r\n" + CL2 + b"\r\n",
        ok(204, b""),
        well_formed=True,
    ),
    case(
        "204-length-2-sent",
        b"HTTP/1.1 204 No Content\r\n" + CL2 + b"\r\nok",
        ok(204, b"", reused=False),
        end=len(b"HTTP/1.1 204 No Content\r\n" + CL2 + b"\r\n"),
    ),
    case("304", b"HTTP/1.1 304 Not Modified\r\n\r\n", ok(304, b""), well_formed=True),
    case(
        "304-length-2-unsent",
        b"HTTP/1.1 304 Not Modified\r\n" + CL2 + b"\r\n",
        ok(304, b""),
        well_formed=True,
    ),
    case(
        "304-chunked-unsent",
        b"HTTP/1.1 304 Not Modified\r\n" + TE + b"\r\n",
        ok(304, b""),
        well_formed=True,
    ),
    # -- the head's size limit, in bytes -----------------------------------------------------
    case("head-at-limit-crlf", sized_head(HEAD_LIMIT, b"\r\n"), ok(), well_formed=True),
    case("head-over-limit-crlf", sized_head(HEAD_LIMIT + 1, b"\r\n"), REFUSED),
    case("head-at-limit-lf", sized_head(HEAD_LIMIT, b"\n"), ok(), well_formed=True),
    case("head-over-limit-lf", sized_head(HEAD_LIMIT + 1, b"\n"), REFUSED),
    case(
        "1xx-and-head-each-at-limit",
        sized_head(HEAD_LIMIT, b"\r\n").replace(b"200 OK", b"100 Go", 1).removesuffix(b"ok")
        + sized_head(HEAD_LIMIT, b"\r\n"),
        ok(),
        well_formed=True,
    ),
    case("head-endless-then-eof", b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 3000, REFUSED, close=True),
    # -- the server closes early -------------------------------------------------------------
    case("eof-before-any-byte", b"", REFUSED, close=True),
    case("eof-mid-status-line", b"HTTP/1.1 2", REFUSED, close=True),
    case("eof-mid-head", b"HTTP/1.1 200 OK\r\n" + CL2, REFUSED, close=True),
    case("eof-before-body", b"HTTP/1.1 200 OK\r\n" + CL2 + b"\r\n", REFUSED, close=True),
    case("eof-mid-body", b"HTTP/1.1 200 OK\r\n" + CL2 + b"\r\no", REFUSED, close=True),
    case("eof-mid-chunk-size", b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2", REFUSED, close=True),
    case("eof-mid-chunk", b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\r\no", REFUSED, close=True),
    case(
        "eof-before-chunk-crlf", b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\r\nok", REFUSED, close=True
    ),
    case(
        "eof-before-last-chunk",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\r\nok\r\n",
        REFUSED,
        close=True,
    ),
    case(
        "eof-after-last-chunk",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\r\nok\r\n0\r\n",
        REFUSED,
        close=True,
    ),
    case(
        "eof-mid-trailers",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\r\nok\r\n0\r\nX: 1\r\n",
        REFUSED,
        close=True,
    ),
    case(
        "eof-after-final-cr",
        b"HTTP/1.1 200 OK\r\n" + TE + b"\r\n2\r\nok\r\n0\r\n\r",
        REFUSED,
        close=True,
    ),
]
CASE_IDS = [c.id for c in CASES]


# ---------------------------------------------------------------------------
# The conversation itself, fed exactly as the pools feed it.


def converse(c: Case, pieces: list[bytes]) -> tuple[Verdict, object]:
    """``c``'s verdict when its bytes arrive in ``pieces``, and the head's headers or the
    refusal's words. Reuse is asked once every byte the server sent has arrived (the pools
    look at the idle socket before reusing it)."""
    assert all(pieces), "an empty read means the server closed"
    talk = Conversation()
    method = c.method.encode()
    talk.request(method, (method + b" / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", None, False), None)
    reads = iter([*pieces, *([b""] if c.close else [])])
    deadline = time.monotonic() + TIMEOUT

    def more() -> bytes:
        data = next(reads, None)
        assert data is not None, f"{c.id}: the conversation waits for bytes that never come"
        return data

    try:
        while (head := talk.head(deadline)) is None:
            talk.feed(more())
        parts = []
        while (piece := talk.body()) != b"":
            if piece is None:
                talk.feed(more())
            else:
                parts.append(bytes(piece))
        for rest in reads:
            talk.feed(rest)
        reused = talk.reusable()
    except httpcore.RemoteProtocolError as exc:
        return REFUSED, str(exc)
    return ("ok", head.status_code, b"".join(parts), reused), head.headers


def cuts(data: bytes, seed: str) -> Iterator[list[bytes]]:
    """Ways to cut ``data`` into reads: whole, byte by byte, in two at every point, and
    some random cuts into many pieces."""
    yield [data] if data else []
    yield [data[i : i + 1] for i in range(len(data))]
    points: Iterable[int] = range(1, len(data))
    if len(data) > 4096:
        # Long answers: in two near every line end and every 512th byte (the limits).
        near = [i for i, byte in enumerate(data) if byte == 10] + list(range(0, len(data), 512))
        points = sorted({p for i in near for p in range(i - 3, i + 4) if 0 < p < len(data)})
    for i in points:
        yield [data[:i], data[i:]]
    rng = random.Random(seed)
    for _ in range(24 if len(data) > 1 else 0):
        points = sorted({rng.randrange(1, len(data)) for _ in range(rng.randrange(2, 30))})
        yield [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]


@pytest.mark.parametrize("c", CASES, ids=CASE_IDS)
def test_every_cut_into_reads_gets_the_same_verdict(c: Case) -> None:
    found: dict[tuple[Verdict, str], str] = {}
    for pieces in cuts(c.data, c.id):
        verdict, detail = converse(c, pieces)
        points = list(itertools.accumulate(len(p) for p in pieces))[:-1]
        found.setdefault((verdict, repr(detail)), f"cut at {points[:5]} ({len(pieces)} reads)")
    assert len(found) == 1, f"{c.id}: the verdict depends on the cut: {found}"
    ((verdict, _),) = found
    assert verdict == c.expect


def _h11_verdict(c: Case) -> Verdict:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=c.method, target="/", headers=[("Host", "127.0.0.1")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(c.data)
    if c.close:
        conn.receive_data(b"")
    status, body = 0, b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
        elif not isinstance(event, h11.InformationalResponse):
            raise AssertionError(f"h11 read {event!r} before the answer's end")
    reused = (
        conn.our_state is h11.DONE
        and conn.their_state is h11.DONE
        and conn.trailing_data == (b"", False)
    )
    return ("ok", status, body, reused)


@pytest.mark.parametrize("c", [c for c in CASES if c.well_formed], ids=lambda c: c.id)
def test_a_well_formed_answer_means_what_h11_says_it_means(c: Case) -> None:
    assert _h11_verdict(c) == c.expect


# ---------------------------------------------------------------------------
# Through the public API, on real sockets: sync and async, whole and byte by byte.


class Script:
    """The module's server: ``/case/<id>/<cut>/<run>`` gets the case's bytes, cut so;
    any other request gets ``NEXT``. Each request's connection is noted, to tell reuse."""

    def __init__(self) -> None:
        self.cases = {c.id: c for c in CASES}
        self.connection_of: dict[str, int] = {}
        self._serials = itertools.count()

    def __call__(self, conn: HostileConnection) -> None:
        serial = next(self._serials)
        # Each byte its own segment, not held back for the last one's ACK.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while (request := conn.read_request()) is not None:
            target = request.split(b" ", 2)[1].decode()
            self.connection_of[target] = serial
            if not target.startswith("/case/"):
                conn.send(NEXT)
                continue
            _, _, name, cut, _ = target.split("/")
            c = self.cases[name]
            if cut == "whole":
                conn.send(c.data)
            else:
                # Byte by byte to the answer's end; what follows it comes with its last
                # byte (sent later, it could not be told from the next request's answer).
                end = len(c.data) if c.end is None else c.end
                for i in range(end - 1):
                    if not conn.send(c.data[i : i + 1]):
                        return
                conn.send(c.data[max(end - 1, 0) :])
            if c.close:
                return


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[HostileServer, Script]]:
    script = Script()
    with HostileServer(script, max_lifetime=300) as srv:
        yield srv, script


_RUNS = itertools.count()


def _result(response: httpx.Response | None, exc: Exception | None) -> tuple[Verdict, object, bool]:
    if response is not None:
        verdict = ("ok", response.status_code, response.content)
        return verdict, response.headers.raw, True
    if isinstance(exc, httpx.RemoteProtocolError):
        return REFUSED, str(exc), False
    return (("error", type(exc).__name__, str(exc)), None, False)


def exchange(
    mode: Mode, srv: HostileServer, script: Script, c: Case, cut: Cut
) -> tuple[Verdict, object]:
    """``c``'s verdict through an httpx client on the SDK's transport, then a second request
    on the same client, which must get its own answer."""
    run = next(_RUNS)
    first, second = f"/case/{c.id}/{cut}/{run}", f"/next/{run}"
    response: httpx.Response | None = None
    failure: Exception | None = None
    if mode == "sync":
        with httpx.Client(transport=GatewayTransport(trust_env=False), timeout=TIMEOUT) as client:
            try:
                response = client.request(c.method, srv.url + first)
            except httpx.TransportError as exc:
                failure = exc
            after = client.get(srv.url + second)
    else:

        async def both_requests() -> httpx.Response:
            nonlocal response, failure
            transport = AsyncGatewayTransport(trust_env=False)
            async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
                try:
                    response = await client.request(c.method, srv.url + first)
                except httpx.TransportError as exc:
                    failure = exc
                return await client.get(srv.url + second)

        after = asyncio.run(both_requests())
    assert (after.status_code, after.content) == (200, b"next"), f"{mode}/{cut}: {after.content!r}"
    verdict, detail, answered = _result(response, failure)
    if answered:
        verdict = (*verdict, script.connection_of[second] == script.connection_of[first])
    return verdict, detail


@pytest.mark.parametrize("c", CASES, ids=CASE_IDS)
def test_the_same_bytes_get_the_same_verdict_sync_and_async_whole_or_bytewise(
    server: tuple[HostileServer, Script], c: Case
) -> None:
    srv, script = server
    seen = {(mode, cut): exchange(mode, srv, script, c, cut) for mode in MODES for cut in CUTS}
    verdicts = {key: verdict for key, (verdict, _) in seen.items()}
    assert set(verdicts.values()) == {c.expect}, verdicts
    # The same headers (as parsed) or the same words of refusal, everywhere.
    details = {repr(detail) for _, detail in seen.values()}
    assert len(details) == 1, seen


# ---------------------------------------------------------------------------
# Reuse, when the server's last bytes arrive after the answer was read.


def _acknowledged(conn: HostileConnection) -> None:
    """Wait until the client's kernel has everything sent (a FIN included): ACKed."""
    deadline = time.monotonic() + TIMEOUT
    queued = struct.pack("i", 0)
    while struct.unpack("i", fcntl.ioctl(conn.sock.fileno(), termios.TIOCOUTQ, queued))[0]:
        assert time.monotonic() < deadline, "the client never acknowledged"
        conn.stopped.wait(0.001)


def _honest(conn: HostileConnection) -> None:
    while conn.read_request() is not None:
        conn.send(NEXT)


def _late(
    kind: Literal["fin", "bytes"], first_read: threading.Event, arrived: threading.Event
) -> Any:
    """Answer ``ok``; then, once the client has read it, close (``fin``) or send a whole
    second answer nobody asked for (``bytes``), and say when the client's kernel has it."""

    def behaviour(conn: HostileConnection) -> None:
        if conn.read_request() is None:
            return
        conn.send(b"HTTP/1.1 200 OK\r\n" + CL2 + b"\r\nok")
        if not first_read.wait(TIMEOUT):
            return
        if kind == "fin":
            conn.sock.shutdown(socket.SHUT_WR)
        else:
            conn.send(http_response(b"smuggled"))
        _acknowledged(conn)
        arrived.set()
        conn.read_request(timeout=1.0)

    return behaviour


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["fin", "bytes"])
def test_a_connection_the_server_spoke_on_after_its_answer_is_never_reused(
    mode: Mode, kind: Literal["fin", "bytes"]
) -> None:
    # The FIN or the bytes are in the client's kernel before the next request is made;
    # in async the loop is not given a turn in between (a coroutine busy between calls).
    first_read, arrived = threading.Event(), threading.Event()
    with HostileServer(_late(kind, first_read, arrived), _honest) as srv:
        if mode == "sync":
            with httpx.Client(
                transport=GatewayTransport(trust_env=False), timeout=TIMEOUT
            ) as client:
                first = client.get(srv.url).content
                first_read.set()
                assert arrived.wait(TIMEOUT)
                second = client.get(srv.url).content
        else:

            async def twice() -> tuple[bytes, bytes]:
                transport = AsyncGatewayTransport(trust_env=False)
                async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
                    first = (await client.get(srv.url)).content
                    first_read.set()
                    assert arrived.wait(TIMEOUT)  # blocks the loop on purpose
                    return first, (await client.get(srv.url)).content

            first, second = asyncio.run(twice())
        assert (first, second) == (b"ok", b"next")
        assert srv.connections == 2


def requester(url: str, **options: Any) -> Requester:
    settings: dict[str, Any] = {
        "route_prefix": "/api/v3",
        "request_timeout": TIMEOUT,
        "retries_attempts": 1,
        "wait_initial": 0,
        "wait_jitter": 0,
        "wait_max": 0,
        "trust_env": False,
        **options,
    }
    return Requester(url, **settings)


@pytest.mark.parametrize("mode", MODES)
def test_a_late_answer_nobody_asked_for_is_never_the_next_calls_answer(mode: Mode) -> None:
    first_read, arrived = threading.Event(), threading.Event()

    def late(conn: HostileConnection) -> None:
        if conn.read_request() is None:
            return
        conn.send(http_response(b'{"status": "R"}'))
        if first_read.wait(TIMEOUT):
            conn.send(http_response(b'{"status": "H"}'))
            _acknowledged(conn)
            arrived.set()
            conn.read_request(timeout=1.0)

    def honest(conn: HostileConnection) -> None:
        while conn.read_request() is not None:
            conn.send(http_response(b'{"status": "D"}'))

    with HostileServer(late, honest) as srv:
        gateway = ServerGateway(requester(srv.url), 1, 1)
        if mode == "sync":
            with gateway:
                statuses = [gateway.log_heartbeat_sync("R", 30.0).status]
                first_read.set()
                assert arrived.wait(TIMEOUT)
                statuses.append(gateway.log_heartbeat_sync("R", 30.0).status)
        else:

            async def twice() -> list[str]:
                async with gateway:
                    statuses = [(await gateway.log_heartbeat("R", 30.0)).status]
                    first_read.set()
                    assert arrived.wait(TIMEOUT)  # blocks the loop on purpose
                    statuses.append((await gateway.log_heartbeat("R", 30.0)).status)
                    return statuses

            statuses = asyncio.run(twice())
        assert statuses == ["R", "D"]


# ---------------------------------------------------------------------------
# The request: refused before a byte is sent, or framed as h11 reads it.


def _silent_server() -> tuple[Any, list[bool], threading.Event]:
    """A behaviour noting whether the client sent any byte at all before it closed."""
    sent: list[bool] = []
    done = threading.Event()

    def behaviour(conn: HostileConnection) -> None:
        sent.append(conn.wait_readable(TIMEOUT))
        done.set()

    return behaviour, sent, done


def _send_one(mode: Mode, url: str, **request: Any) -> Exception:
    try:
        if mode == "sync":
            with httpx.Client(
                transport=GatewayTransport(trust_env=False), timeout=TIMEOUT
            ) as client:
                client.post(url, **request)
        else:

            async def post() -> None:
                transport = AsyncGatewayTransport(trust_env=False)
                async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
                    await client.post(url, **request)

            asyncio.run(post())
    except Exception as exc:
        return exc
    raise AssertionError("the request should have been refused")


BAD_REQUESTS: dict[str, dict[str, Any]] = {
    "crlf-in-value": {"headers": {"X-Token": "a\r\nX-Evil: 1"}},
    "lf-in-value": {"headers": {"X-Token": "a\nb"}},
    "cr-in-value": {"headers": {"X-Token": "a\rb"}},
    "nul-in-value": {"headers": {"X-Token": "a\x00b"}},
    "space-in-name": {"headers": {"X Token": "a"}},
    "colon-in-name": {"headers": {"X:Token": "a"}},
    "length-over-body": {"content": b"abc", "headers": {"Content-Length": "5"}},
    "length-under-body": {"content": b"abc", "headers": {"Content-Length": "2"}},
    "length-not-digits": {"content": b"abc", "headers": {"Content-Length": "+3"}},
    "length-and-chunked": {
        "content": b"abc",
        "headers": {"Content-Length": "3", "Transfer-Encoding": "chunked"},
    },
    "te-gzip": {"content": b"abc", "headers": {"Transfer-Encoding": "gzip"}},
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_a_malformed_request_is_refused_before_any_byte_is_sent(mode: Mode, name: str) -> None:
    behaviour, sent, done = _silent_server()
    with HostileServer(behaviour) as srv:
        error = _send_one(mode, srv.url, **BAD_REQUESTS[name])
        assert type(error) is httpx.LocalProtocolError, repr(error)
        assert "a\r\n" not in str(error)
        assert "X-Evil" not in str(error)
        if done.wait(TIMEOUT):
            assert sent == [False]
        else:
            assert srv.connections == 0


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\nb", "a\x00b"])
def test_the_gateway_refuses_a_bad_header_value_as_its_own_error(value: str) -> None:
    with pytest.raises(ConfigurationError) as made:
        requester("http://127.0.0.1:9", headers={"X-Token": value})
    assert "X-Evil" not in str(made.value)
    req = requester("http://127.0.0.1:9")
    client = httpx.Client(transport=GatewayTransport(trust_env=False))
    with client, pytest.raises(GatewayError) as sent:
        req.send(routes.get_server_time(), client, headers={"X-Token": value})
    assert sent.value.attempts == 0
    assert "X-Evil" not in str(sent.value)


def _received(conn: HostileConnection) -> bytes:
    """The next bytes the client sends; ``b""`` once it closed (or never sent)."""
    deadline = time.monotonic() + TIMEOUT
    while not conn.stopped.is_set() and time.monotonic() < deadline:
        try:
            return conn.sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
    return b""


def _request_reader(seen: list[tuple[h11.Request, bytes]], done: threading.Event) -> Any:
    """Read each request with h11 (the server side), note it, answer ``NEXT``."""

    def behaviour(conn: HostileConnection) -> None:
        parser = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = b""
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                data = _received(conn)
                if not data:
                    return
                parser.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                seen.append((request, body))
                done.set()
                answer = h11.Response(status_code=200, headers=[("Content-Length", "4")])
                for part in (answer, h11.Data(b"next"), h11.EndOfMessage()):
                    conn.send(parser.send(part) or b"")
                parser.start_next_cycle()
                request, body = None, b""
            else:
                return

    return behaviour


async def _pieces(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "parts",
    [[b"ab", b"", b"cd\r\n0\r\n\r\n"], [], [b""], [b"x" * 70000]],
    ids=["pieces", "nothing", "empty-piece", "70000-bytes"],
)
def test_a_streamed_request_body_arrives_chunked(mode: Mode, parts: list[bytes]) -> None:
    seen: list[tuple[h11.Request, bytes]] = []
    done = threading.Event()
    with HostileServer(_request_reader(seen, done)) as srv:
        if mode == "sync":
            with httpx.Client(
                transport=GatewayTransport(trust_env=False), timeout=TIMEOUT
            ) as client:
                answers = [client.post(srv.url, content=iter(parts)).content for _ in range(2)]
        else:

            async def post() -> list[bytes]:
                transport = AsyncGatewayTransport(trust_env=False)
                async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
                    return [
                        (await client.post(srv.url, content=_pieces(parts))).content
                        for _ in range(2)
                    ]

            answers = asyncio.run(post())
        assert done.wait(TIMEOUT)
    assert answers == [b"next", b"next"]
    assert srv.connections == 1
    for request, body in seen:
        headers = dict(request.headers)
        assert headers[b"transfer-encoding"] == b"chunked"
        assert b"content-length" not in headers
        assert body == b"".join(parts)


@pytest.mark.parametrize(
    "headers",
    [{"X-Token": "a\r\nX-Evil: 1"}, {"Content-Length": "9" * 5000}],
    ids=["crlf-in-value", "content-length-of-5000-digits"],
)
def test_a_malformed_request_is_refused_before_any_connection_is_made(
    headers: dict[str, str],
) -> None:
    # Nothing listens on the port: a connect attempt would fail with ConnectError.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with pytest.raises(httpx.LocalProtocolError, match="value not shown"):
        GatewayTransport().handle_request(httpx.Request("POST", url, headers=headers, content=b"x"))

    async def send_async() -> None:
        await AsyncGatewayTransport().handle_async_request(
            httpx.Request("POST", url, headers=headers, content=b"x")
        )

    with pytest.raises(httpx.LocalProtocolError, match="value not shown"):
        asyncio.run(send_async())
