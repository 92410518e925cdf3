"""The one sender: a call's request out through httpx's transport API, its answer into the reader.

Every request the gateway makes goes through here, sync or async, on
whatever it was given to send on: the SDK's own transports
(:mod:`.transports`), a transport handed to the requester (a test's mock,
:class:`~jobmon_gateway.testing.FakeJobmonServer`'s), or a caller's
``httpx.Client``/``httpx.AsyncClient``. Mocking and instrumentation that
patch httpx's transports (pytest-httpx, OpenTelemetry) therefore see every request.

What is decided is written once, in the plain functions below; the two
drivers (:class:`Sender`, :class:`AsyncSender`) only move data, and differ
in ``await``:

* the request carries its deadline and a trace that tells whether it went
  on a reused connection;
* the answer's head is checked and its raw body streamed into the one
  :class:`~._reader.BodyReader` (size limit, decompression), the deadline
  checked after every piece;
* a request whose reused connection failed before any answer was resent
  once, at once and uncounted (the server never answered it: uvicorn
  resets a kept-alive connection after every 500), if it is repeat-safe;
* every failure becomes exactly one GatewayError (:func:`._answers.error_from`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ._answers import Answer, Attempt, error_from, never_sent
from ._http11 import WHOLE_BODY, PartialAnswer
from ._reader import BodyReader, Deadline, Fault, check_head
from ._watchdog import watch
from .errors import GatewayError, InvalidRequestError

__all__ = ["AsyncSender", "Hooks", "Outgoing", "Sender"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One call's request, built once and resent as is on every retry."""

    method: str
    url: str
    headers: tuple[tuple[bytes, bytes], ...]  # checked and encoded once per gateway
    body: bytes | None
    repeat_safe: bool
    framed: bool = False  # the headers name Host, Content-Length or Transfer-Encoding


@dataclass(frozen=True, slots=True)
class Hooks:
    """A requester's event hooks: called with every request sent and every answer's head."""

    request: Sequence[Callable[[httpx.Request], Any]] = ()
    response: Sequence[Callable[[httpx.Response], Any]] = ()


_STALE = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class _Trace:
    """httpcore's trace extension: whether the request went on a newly made connection."""

    __slots__ = ("connected", "events")

    def __init__(self) -> None:
        self.events = 0
        self.connected = False

    def __call__(self, name: str, info: Mapping[str, Any]) -> None:
        self.events += 1
        if name.startswith("connection.connect_tcp"):
            self.connected = True

    async def in_async(self, name: str, info: Mapping[str, Any]) -> None:
        self(name, info)

    @property
    def reused(self) -> bool:
        # No events at all: a mock transport, which has no connections.
        return self.events > 0 and not self.connected


_URLS: dict[str, tuple[httpx.URL, bytes]] = {}
_URLS_KEPT = 512


def _url(text: str) -> tuple[httpx.URL, bytes]:
    # httpx checks a URL character by character (~40 µs for a gateway's);
    # a driver sends the same few URLs again and again (every heartbeat's is
    # the same), and httpx.URL is immutable: parse each once, with the Host
    # header httpx would give it.
    found = _URLS.get(text)
    if found is None:
        if len(_URLS) >= _URLS_KEPT:
            _URLS.clear()
        url = httpx.URL(text)
        found = _URLS[text] = (url, url.netloc)
    return found


def _request(
    client: httpx.Client | httpx.AsyncClient | None,
    out: Outgoing,
    deadline: Deadline,
    trace: Callable[..., Any],
) -> httpx.Request:
    left = deadline.remaining()
    extensions = {
        # httpx's own timeouts for any transport; the SDK's pools read the deadline.
        "timeout": {"connect": left, "read": left, "write": left, "pool": left},
        "trace": trace,
        "jobmon_gateway.deadline": deadline.at,
    }
    url, host = _url(out.url)
    if client is not None:
        # A lent client builds it: its own headers, auth and cookies apply.
        request = client.build_request(out.method, url, content=out.body, headers=out.headers)
        request.extensions.update(extensions)
        return request
    if out.framed:
        # The caller framed it: httpx decides what it adds.
        return httpx.Request(
            out.method, url, headers=out.headers, content=out.body, extensions=extensions
        )
    # What httpx.Request(content=body) makes, built directly (a third of
    # its cost): the Host line first, the given lines, the body's length.
    lines = [(b"Host", host), *out.headers]
    body = out.body  # None for a GET only: httpx gives that no Content-Length
    if body is not None:
        lines.append((b"Content-Length", b"%d" % len(body)))
    request = httpx.Request(
        out.method,
        url,
        headers=lines,
        stream=httpx.ByteStream(body or b""),
        extensions=extensions,
    )
    request.read()  # as with content=: hooks and mocks read request.content
    return request


def _reader(response: httpx.Response, limit: int) -> BodyReader:
    # The raw header bytes: decoding every header to text is only worth it
    # for the answers that keep them (errors) and for response hooks.
    encoding, length = check_head(response.status_code, response.headers.raw)
    if response.is_stream_consumed:
        # A mock handed back an answer it had read (and decoded) already.
        reader = BodyReader(None, limit)
        reader.feed(response.content)
        return reader
    return BodyReader(encoding, limit, length)


def _whole(response: httpx.Response) -> bytes | None:
    # The SDK's own pools hand a body that came with its head over whole.
    # Only asked of the SDK's own transport: a transport wrapping it may
    # answer with a stream of its own (decoded, replaced) and the pool's
    # extensions, and then the stream is the answer.
    if response.is_stream_consumed:
        return None
    whole = response.extensions.get(WHOLE_BODY)
    return whole if isinstance(whole, bytes) else None


def _answer(response: httpx.Response, body: bytes) -> Answer:
    status = response.status_code
    # Only errors keep their headers (Retry-After).
    return Answer.of(status, () if 200 <= status < 300 else response.headers.multi_items(), body)


def _verdict(
    exc: Exception,
    *,
    trace: _Trace,
    answered: bool,
    deadline: Deadline,
    out: Outgoing,
    attempt: Attempt,
    resent: bool,
) -> GatewayError | None:
    """The call's error for ``exc``, or ``None``: resend at once, uncounted."""
    if isinstance(exc, GatewayError):
        return exc
    answered = answered or isinstance(exc.__cause__, PartialAnswer)
    if not isinstance(exc, Fault) and deadline.passed():
        # Whatever broke last (a socket the watchdog shut), the deadline is
        # why; the phase is kept (a connect that timed out sent nothing).
        return error_from(
            deadline.overdue(), attempt, answered=answered, connecting=never_sent(exc)
        )
    if isinstance(exc, _STALE) and trace.reused and not answered:
        if out.repeat_safe and not resent:
            return None
        return error_from(exc, attempt, answered=False)
    return error_from(exc, attempt, answered=answered)


def _status_answer(response: httpx.Response, limit: int) -> Answer:
    """The answer a lent client's own ``raise_for_status`` hook refused: its status, and
    its body if the hook had read it (through the size limit), for the server's message."""
    body = b""
    if response.is_stream_consumed:
        try:
            reader = BodyReader(None, limit)
            reader.feed(response.content)
            body = reader.finish()
        except (Fault, httpx.HTTPError):
            body = b""
    return Answer.of(response.status_code, response.headers.multi_items(), body)


def _closed_client_error(kind: str) -> InvalidRequestError:
    # Quietly swapping in a client of our own would drop the caller's
    # settings (auth, proxies, limits); httpx would raise a bare
    # RuntimeError. Say what happened instead.
    return InvalidRequestError(
        f"the {kind} given to set_session() has been closed; hand in an open one"
    )


def _leftover(response: httpx.Response) -> Any:
    """httpcore's connection of a lent client's ``response`` if bytes past its end sit in it.

    httpcore would reuse it and read those bytes as the next call's answer
    (a smuggled response); the caller closes it instead. The SDK's own pool
    refuses such a connection itself; for a lent client this looks inside
    httpcore, defensively: with another transport there is nothing to find.
    """
    stream: Any = response.stream
    for _ in range(6):
        state = getattr(stream, "_h11_state", None)
        if state is not None:
            trailing = getattr(state, "trailing_data", (b"", False))
            return stream if trailing[0] else None
        stream = next(
            (
                getattr(stream, name)
                for name in ("_stream", "_httpcore_stream", "_connection")
                if getattr(stream, name, None) is not None
            ),
            None,
        )
        if stream is None:
            return None
    return None


class Sender:
    """Sends calls on a sync transport or a lent ``httpx.Client``."""

    def __init__(
        self,
        via: httpx.BaseTransport | httpx.Client,
        limit: int,
        hooks: Hooks,
        *,
        bounded: bool,
        owned: bool,
    ) -> None:
        self.via = via
        self._client = via if isinstance(via, httpx.Client) else None
        self._limit = limit
        self._hooks = hooks
        # A transport that keeps the deadline itself needs no watchdog.
        self._bounded = bounded
        self.owned = owned

    def send(self, out: Outgoing, deadline: Deadline, attempt: Attempt) -> Answer:
        """Send ``out`` and return the complete answer; raises only GatewayErrors."""
        client = self._client
        if client is not None and client.is_closed:
            raise _closed_client_error("httpx.Client")
        resent = False
        while True:
            trace = _Trace()
            answered = False
            try:
                request = _request(client, out, deadline, trace)
                for hook in self._hooks.request:
                    hook(request)
                # Hooks run outside the watch: only the send's own sockets are shut.
                with contextlib.nullcontext() if self._bounded else watch(deadline.at, _SEND):
                    if client is not None:
                        response = client.send(request, stream=True)
                    else:
                        response = self.via.handle_request(request)  # type: ignore[union-attr]
                    answered = True
                    try:
                        reader = _reader(response, self._limit)
                        whole = _whole(response) if self._bounded else None
                        if whole is not None:
                            reader.feed(whole)
                        elif not response.is_stream_consumed:
                            for chunk in response.iter_raw():
                                reader.feed(chunk)
                                deadline.check()
                        body = reader.finish()
                    finally:
                        # Closed before the response hands it back to the lent pool.
                        leftover = _leftover(response) if client is not None else None
                        if leftover is not None:
                            leftover.close()
                        response.close()
                for seen in self._hooks.response:
                    seen(_as_read(response, request, body))
            except httpx.HTTPStatusError as exc:
                # The lent client raises on error statuses itself (a hook): keep the status.
                return _status_answer(exc.response, self._limit)
            except Exception as exc:
                verdict = _verdict(
                    exc,
                    trace=trace,
                    answered=answered,
                    deadline=deadline,
                    out=out,
                    attempt=attempt,
                    resent=resent,
                )
                if verdict is None:
                    resent = True
                    continue
                raise verdict from exc
            return _answer(response, body)

    def close(self) -> None:
        """Close the transport if the SDK made it; a lent client stays open."""
        if self.owned and not isinstance(self.via, httpx.Client):
            self.via.close()


class AsyncSender:
    """Sends calls on an async transport or a lent ``httpx.AsyncClient``."""

    def __init__(
        self,
        via: httpx.AsyncBaseTransport | httpx.AsyncClient,
        limit: int,
        hooks: Hooks,
        *,
        bounded: bool,
        owned: bool,
    ) -> None:
        self.via = via
        self._client = via if isinstance(via, httpx.AsyncClient) else None
        self._limit = limit
        self._hooks = hooks
        self._bounded = bounded
        self.owned = owned

    async def send(self, out: Outgoing, deadline: Deadline, attempt: Attempt) -> Answer:
        """Send ``out`` and return the complete answer; raises only GatewayErrors."""
        client = self._client
        if client is not None and client.is_closed:
            raise _closed_client_error("httpx.AsyncClient")
        resent = False
        while True:
            trace = _Trace()
            state = {"answered": False}
            try:
                if self._bounded:
                    return await self._roundtrip(client, out, deadline, trace, state)
                # Not the SDK's own pool: bound the whole exchange here.
                return await asyncio.wait_for(
                    self._roundtrip(client, out, deadline, trace, state), deadline.remaining()
                )
            except httpx.HTTPStatusError as exc:
                return _status_answer(exc.response, self._limit)
            except asyncio.TimeoutError:
                raise error_from(deadline.overdue(), attempt, answered=True) from None
            except Exception as exc:
                verdict = _verdict(
                    exc,
                    trace=trace,
                    answered=state["answered"],
                    deadline=deadline,
                    out=out,
                    attempt=attempt,
                    resent=resent,
                )
                if verdict is None:
                    resent = True
                    continue
                raise verdict from exc

    async def _roundtrip(
        self,
        client: httpx.AsyncClient | None,
        out: Outgoing,
        deadline: Deadline,
        trace: _Trace,
        state: dict[str, bool],
    ) -> Answer:
        request = _request(client, out, deadline, trace.in_async)
        for hook in self._hooks.request:
            await _maybe_await(hook(request))
        if client is not None:
            response = await client.send(request, stream=True)
        else:
            response = await self.via.handle_async_request(request)  # type: ignore[union-attr]
        state["answered"] = True
        try:
            reader = _reader(response, self._limit)
            whole = _whole(response) if self._bounded else None
            if whole is not None:
                reader.feed(whole)
            elif not response.is_stream_consumed:
                async for chunk in response.aiter_raw():
                    reader.feed(chunk)
                    deadline.check()
            body = reader.finish()
        finally:
            # Closed before the response hands it back to the lent pool.
            leftover = _leftover(response) if client is not None else None
            if leftover is not None:
                await leftover.aclose()
            await response.aclose()
        for seen in self._hooks.response:
            await _maybe_await(seen(_as_read(response, request, body)))
        return _answer(response, body)

    async def aclose(self) -> None:
        """Close the transport if the SDK made it; a lent client stays open."""
        if self.owned and not isinstance(self.via, httpx.AsyncClient):
            await self.via.aclose()


async def _maybe_await(result: Any) -> None:
    if inspect.isawaitable(result):
        await result


_DECODED = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _as_read(response: httpx.Response, request: httpx.Request, body: bytes) -> httpx.Response:
    """The answer as a response hook sees it: its body read already, by the SDK's reader.

    A hook that reads the body (``response.read()``, as httpx's docs show)
    gets the bytes the size limit let through, never a second, unbounded read.
    """
    return httpx.Response(
        response.status_code,
        headers=[
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in _DECODED
        ],
        content=body,
        request=request,
        extensions={"http_version": b"HTTP/1.1"},
    )


_SEND = Sender.send.__code__
"""Where a watched sync send starts: the watchdog looks no further up the stack."""
