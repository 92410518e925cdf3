"""Tests of the fault-injecting server itself, through httpx and raw sockets.

They also pin down what each fault looks like to a sync httpx client, which is
what the SDK's retry tests rely on.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import httpx
import pytest

from fault_server import (
    Action,
    FaultServer,
    FaultServerError,
    refusing_url,
    unused_port_url,
)

TIMEOUT = httpx.Timeout(0.2)


def _client(srv: FaultServer) -> httpx.Client:
    return httpx.Client(base_url=srv.url, timeout=TIMEOUT)


def test_respond_and_record_request() -> None:
    with FaultServer() as srv, _client(srv) as client:
        srv.script(Action.respond(201, {"status": "R"}, headers={"X-Extra": "1"}))
        response = client.post(
            "/api/v3/workflow_run/7/log_heartbeat?client_jobmon_version=3.6.0",
            json={"status": "R"},
            headers={"X-Server-Structlog-Context": "{}"},
        )
        assert response.status_code == 201
        assert response.json() == {"status": "R"}
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-extra"] == "1"
        assert "connection" not in response.headers

        [req] = srv.requests
        assert req.method == "POST"
        assert req.path == "/api/v3/workflow_run/7/log_heartbeat?client_jobmon_version=3.6.0"
        assert req.route == "/api/v3/workflow_run/7/log_heartbeat"
        assert req.query == {"client_jobmon_version": ["3.6.0"]}
        assert req.headers["content-type"] == "application/json"
        assert req.headers["x-server-structlog-context"] == "{}"
        assert req.headers["content-length"] == str(len(req.body))
        assert req.json() == {"status": "R"}
        assert (req.connection, req.index_on_connection) == (0, 0)
        assert req.action is not None
        assert req.action.status == 201


def test_script_is_fifo_then_default() -> None:
    with FaultServer(Action.respond(503), default=Action.respond(404, "nope")) as srv:
        srv.script(Action.respond(200, "second"))
        with _client(srv) as client:
            assert client.get("/").status_code == 503
            assert client.get("/").text == "second"
            assert srv.pending == 0
            assert [client.get("/").status_code for _ in range(2)] == [404, 404]


def test_keep_alive_reuses_one_connection() -> None:
    with FaultServer() as srv, _client(srv) as client:
        for _ in range(3):
            assert client.get("/ping").status_code == 200
        assert srv.connections_accepted == 1
        assert srv.open_connections == 1
        assert [(r.connection, r.index_on_connection) for r in srv.requests] == [
            (0, 0),
            (0, 1),
            (0, 2),
        ]


@pytest.mark.parametrize(
    ("action", "error"),
    [
        # Observed: a FIN instead of an answer -> "Server disconnected without
        # sending a response."; a RST -> "[Errno 104] Connection reset by peer".
        (Action.respond_then_close(), httpx.RemoteProtocolError),
        (Action.respond_then_reset(), httpx.ReadError),
    ],
    ids=["close", "reset"],
)
def test_respond_then_drop_fails_next_request_on_same_connection(
    action: Action, error: type[httpx.HTTPError]
) -> None:
    with FaultServer(action) as srv, _client(srv) as client:
        first = client.post("/a", json={})
        assert first.status_code == 500
        assert first.headers["content-type"] == "application/custom+json"
        assert "connection" not in first.headers
        with pytest.raises(error):
            client.post("/b", json={"n": 2})
        # httpx discards the broken connection; the retry goes out on a new one.
        assert client.post("/c", json={}).status_code == 200
        assert srv.connections_accepted == 2
        assert [r.route for r in srv.requests] == ["/a", "/c"]
        [dropped] = srv.dropped_requests
        assert (dropped.route, dropped.body, dropped.action) == ("/b", b'{"n":2}', None)


def test_immediate_close_is_noticed_by_httpx_when_idle() -> None:
    with FaultServer(Action.respond_then_reset(on_next_request=False)) as srv, _client(srv) as c:
        assert c.get("/").status_code == 500
        assert srv.wait_for_idle()
        # httpx sees the idle pooled connection is dead and quietly reconnects.
        assert c.get("/").status_code == 200
        assert srv.connections_accepted == 2


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (Action.reset_before_response(), httpx.ReadError),
        (Action.close_before_response(), httpx.RemoteProtocolError),
        (Action.reset_mid_body(), httpx.ReadError),
        (Action.close_mid_body(), httpx.RemoteProtocolError),
        (Action.raw(b"garbage\r\n\r\n"), httpx.RemoteProtocolError),
    ],
    ids=["reset-before", "close-before", "reset-mid-body", "close-mid-body", "raw-garbage"],
)
def test_connection_faults_raise_httpx_errors(action: Action, error: type[httpx.HTTPError]) -> None:
    with FaultServer(action) as srv, _client(srv) as client:
        with pytest.raises(error):
            client.post("/x", json={"a": 1})
        assert len(srv.requests) == 1
        assert client.post("/x", json={}).status_code == 200


def test_close_mid_body_reports_short_body() -> None:
    body = b'{"tasks_by_status": {"Q": [1, 2, 3]}}'
    expected = f"received 10 bytes, expected {len(body)}"
    with (
        FaultServer(Action.close_mid_body(body=body, sent=10)) as srv,
        _client(srv) as client,
        pytest.raises(httpx.RemoteProtocolError, match=expected),
    ):
        client.get("/")


def test_truncated_json_is_a_complete_200() -> None:
    with FaultServer(Action.truncated_json()) as srv, _client(srv) as client:
        response = client.get("/")
        assert response.status_code == 200
        assert response.content == b'{"status": "R'
        with pytest.raises(json.JSONDecodeError):
            response.json()
        assert client.get("/").status_code == 200
        assert srv.connections_accepted == 1


def test_html_error_page() -> None:
    with FaultServer(Action.html_error_page(503)) as srv, _client(srv) as client:
        response = client.get("/")
        assert response.status_code == 503
        assert response.headers["content-type"] == "text/html"
        assert "<h1>503 Service Unavailable</h1>" in response.text


def test_retry_after_forms() -> None:
    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=30)
    with (
        FaultServer(
            Action.respond(429, retry_after=2),
            Action.respond(503, retry_after=when),
            Action.respond(503, retry_after="soon"),
        ) as srv,
        _client(srv) as client,
    ):
        assert client.get("/").headers["retry-after"] == "2"
        assert parsedate_to_datetime(client.get("/").headers["retry-after"]) == when
        assert client.get("/").headers["retry-after"] == "soon"


def test_delay_beyond_client_timeout_raises_read_timeout() -> None:
    with FaultServer(Action.delay(5.0, Action.respond(200))) as srv, _client(srv) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.get("/slow")
        assert time.monotonic() - started < 0.5
        # The server notices the client hung up and frees the delayed connection.
        assert srv.wait_for_idle(1.0)


def test_delay_does_not_block_other_connections() -> None:
    with FaultServer(Action.delay(0.3, Action.respond(200, "late"))) as srv:
        results: list[str] = []
        with httpx.Client(base_url=srv.url, timeout=2.0) as slow:
            thread = threading.Thread(target=lambda: results.append(slow.get("/").text))
            thread.start()
            assert srv.wait_for_requests(1)
            with _client(srv) as fast:
                assert fast.get("/").text == "{}"
            thread.join(2.0)
        assert results == ["late"]


@pytest.mark.parametrize(("interval", "ok"), [(0.01, True), (0.3, False)])
def test_trickle(interval: float, ok: bool) -> None:
    body = b'{"status": "R"}'
    action = Action.trickle(body, chunk_size=4, interval=interval)
    with FaultServer(action) as srv, _client(srv) as client:
        if ok:
            assert client.get("/").content == body
        else:
            with pytest.raises(httpx.ReadTimeout):
                client.get("/")


def test_large_body() -> None:
    size = 8 * 1024 * 1024
    with FaultServer(Action.large_body(size)) as srv:
        with httpx.Client(base_url=srv.url, timeout=5.0) as client:
            response = client.get("/")
        assert len(response.content) == size
        assert response.json()["pad"].startswith("xxx")


def test_hang_times_out_and_server_notices_client_leaving() -> None:
    with FaultServer(Action.hang(), Action.stall_mid_body()) as srv:
        for _ in range(2):
            with _client(srv) as client, pytest.raises(httpx.ReadTimeout):
                client.get("/")
        assert srv.wait_for_idle(1.0)


def test_stop_is_prompt_with_hung_connections() -> None:
    srv = FaultServer(Action.hang(), Action.stall_mid_body(), Action.delay(30.0)).start()
    socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=1.0) for _ in range(3)]
    try:
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert srv.wait_for_requests(3)
        assert srv.open_connections == 3
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 0.5
        assert srv.open_connections == 0
        assert srv.errors == []
    finally:
        srv.stop()
        for sock in socks:
            sock.close()


def test_unused_port_and_refusing_url_refuse() -> None:
    with httpx.Client(timeout=TIMEOUT) as client:
        with pytest.raises(httpx.ConnectError):
            client.get(unused_port_url())
        with refusing_url() as url, pytest.raises(httpx.ConnectError):
            client.get(url)


def test_stop_and_resume_listening() -> None:
    with FaultServer() as srv, _client(srv) as kept:
        assert kept.get("/").status_code == 200
        srv.stop_listening()
        with _client(srv) as fresh, pytest.raises(httpx.ConnectError):
            fresh.get("/")
        assert kept.get("/").status_code == 200  # open connections keep working
        srv.resume_listening()
        with _client(srv) as fresh:
            assert fresh.get("/").status_code == 200
        assert srv.connections_accepted == 2


def test_stops_cleanly() -> None:
    before = threading.active_count()
    with FaultServer() as srv:
        with _client(srv) as client:
            client.get("/")
        with _client(srv) as client:
            client.get("/")
            assert srv.open_connections >= 1
    assert srv.open_connections == 0
    assert srv.connections_accepted == 2
    assert srv.errors == []
    assert threading.active_count() == before
    with httpx.Client(timeout=TIMEOUT) as client, pytest.raises(httpx.ConnectError):
        client.get(srv.url)


def _raw_exchange(port: int, data: bytes) -> bytes:
    """Send `data` on a fresh raw connection and return everything received until EOF."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
        sock.sendall(data)
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_never_started_server_holds_nothing() -> None:
    srv = FaultServer()
    srv.stop()
    with pytest.raises(RuntimeError):
        _ = srv.url


def test_request_cap_stops_server() -> None:
    with FaultServer(max_requests=2, raise_on_error=False) as srv, _client(srv) as client:
        client.get("/")
        client.get("/")
        with pytest.raises(httpx.ReadError):
            client.get("/")
    assert len(srv.requests) == 2
    with pytest.raises(FaultServerError, match="max_requests"):
        srv.raise_errors()


def test_lifetime_cap_stops_hung_server() -> None:
    with FaultServer(Action.hang(), max_lifetime=0.3, raise_on_error=False) as srv:
        started = time.monotonic()
        with (
            httpx.Client(base_url=srv.url, timeout=5.0) as client,
            pytest.raises(httpx.RemoteProtocolError),
        ):
            client.get("/")
        assert time.monotonic() - started < 1.0
    assert any("max_lifetime" in error for error in srv.errors)


def test_raw_socket_pipelining_and_chunked_body() -> None:
    with FaultServer(Action.respond(200, "one"), Action.respond(200, "two")) as srv:
        received = _raw_exchange(
            srv.port,
            b"PUT /c?x=1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: y\r\n\r\n"
            b"GET /d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        assert received.count(b"HTTP/1.1 200 OK\r\n") == 2
        assert received.endswith(b"two")
        first, second = srv.requests
        assert (first.method, first.path, first.body) == ("PUT", "/c?x=1", b"abcde")
        assert (second.method, second.index_on_connection) == ("GET", 1)


def test_raw_socket_sees_real_reset() -> None:
    with FaultServer(Action.reset_before_response()) as srv, pytest.raises(ConnectionResetError):
        _raw_exchange(srv.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")


def test_malformed_request_is_raised_on_exit() -> None:
    with pytest.raises(FaultServerError, match="malformed"), FaultServer() as srv:
        assert _raw_exchange(srv.port, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400")
