"""Routed mode when things go wrong: stale keep-alive connections, failing hosts, deadlines during a
forward, hosts answering garbage, Redis lost mid-forward, unregistered actions.

Real hosts (runtime processes in host mode), a real password-protected Redis, real HTTP. Each case
checks that the activation gets its result or a precise error within its deadline, and that
nothing else is disturbed (the next activation is served normally).
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from routed_harness import RoutedStack
from runtime_harness import RuntimeHandle, wait_until
from warmwhisk_protocol.records import HostRecord
from warmwhisk_protocol.registry import RedisRegistry as Registry
from warmwhisk_runtime.router import HostConnections, HostFailed

ACTION = """
import os, time

def main(args):
    time.sleep(args.get("sleep", 0))
    return {"pid": os.getpid(), "echo": args.get("x")}
"""


def deadline_in(seconds: float) -> str:
    return str(int((time.time() + seconds) * 1000))


@pytest.fixture
def stack(start_process_runtime, redis_server, tmp_path) -> RoutedStack:
    return RoutedStack(start_process_runtime, redis_server, tmp_path)


@pytest.fixture
def registry(stack) -> Registry:
    return stack.registry()


def start_router(stack: RoutedStack) -> tuple[RuntimeHandle, str]:
    router = stack.router()
    assert router.init(ACTION, env=stack.init_env())[0] == 200
    (key,) = stack.registry().registered_actions()
    return router, key


def warm(registry: Registry) -> list[str]:
    return sorted(h.host_id for h in registry.hosts() if h.state == "warm")


def timed_run(router: RuntimeHandle, value: dict, deadline_s: float = 10.0) -> tuple[int, dict, float]:
    started = time.monotonic()
    status, body = router.run(value, deadline=deadline_in(deadline_s), timeout=deadline_s + 10)
    return status, body, time.monotonic() - started


# ------------------------------------------------------------------ stale keep-alive connections
def test_a_run_after_an_idle_gap_longer_than_the_hosts_keepalive_is_served_at_once(stack, registry):
    """The bug this suite was written for: the host closed the router's idle connection."""
    router, key = start_router(stack)
    stack.host(key, "h1", WARMWHISK_KEEPALIVE_S="1")
    wait_until(lambda: warm(registry) == ["h1"], timeout_s=15, what="the host to turn warm")
    assert registry.hosts()[0].keepalive_s == 1.0  # advertised in the heartbeat

    assert timed_run(router, {"x": 1})[0] == 200
    time.sleep(3.0)  # idle for three keep-alives: the host has closed the pooled connection
    status, body, took = timed_run(router, {"x": 2})
    assert status == 200 and body["echo"] == 2, body
    assert took < 1.0, f"the run after the gap took {took:.2f}s"
    assert not registry.hosts()[0].unreachable  # a closed idle connection is not the host's fault


class _KeepAliveThenDrop(http.server.BaseHTTPRequestHandler):
    """Answers the first request of each connection (keep-alive), then reads the next one and
    closes the connection without a byte of answer: a host whose keep-alive ran out just as the
    request arrived."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        served = getattr(self, "served", 0)
        if served:
            self.close_connection = True
            return
        self.served = served + 1
        self.server.requests.append(body)  # type: ignore[attr-defined]
        payload = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dropping_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KeepAliveThenDrop)
    server.requests = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_request_on_a_stale_connection_is_sent_once_more_on_a_fresh_one(dropping_server):
    address = f"127.0.0.1:{dropping_server.server_address[1]}"
    connections = HostConnections()
    assert connections.post(address, b"1", {}, 5.0) == (200, b'{"ok": true}')
    # The pooled connection looks fine (no FIN yet), but the server drops the next request on it.
    assert connections.post(address, b"2", {}, 5.0) == (200, b'{"ok": true}')
    assert dropping_server.requests == [b"1", b"2"]  # type: ignore[attr-defined]


def test_a_pooled_connection_the_host_closed_is_not_used(dropping_server):
    address = f"127.0.0.1:{dropping_server.server_address[1]}"
    connections = HostConnections()
    connections.post(address, b"1", {}, 5.0)
    ((conn, _),) = connections._idle[address]
    conn.sock.shutdown(socket.SHUT_RD)  # as when the host's FIN arrived: the socket turns readable
    assert connections._take(address, keepalive_s=0.0) is None  # dropped, not handed out
    assert conn.sock is None


def test_a_pooled_connection_idle_past_the_hosts_keepalive_is_not_used(dropping_server):
    address = f"127.0.0.1:{dropping_server.server_address[1]}"
    now = [100.0]
    connections = HostConnections(clock=lambda: now[0])
    connections.post(address, b"1", {}, 5.0)
    now[0] += 0.7  # within a 1 s keep-alive, less the margin
    conn = connections._take(address, keepalive_s=1.0)
    assert conn is not None
    connections._give_back(address, conn)
    now[0] += 0.8  # idle 0.8 s now: the host may close it any moment
    assert connections._take(address, keepalive_s=1.0) is None


def test_a_fresh_connection_that_is_refused_fails_the_host_at_once():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(HostFailed, match="refused"):
            HostConnections().post(f"127.0.0.1:{port}", b"{}", {}, 2.0)


# ---------------------------------------------------------------------------- failing hosts
def test_when_both_hosts_fail_the_run_says_so_at_once_and_names_them(stack):
    router, key = start_router(stack)
    registry = stack.registry(heartbeat_ttl_s=30)
    # Slow heartbeats: the dead hosts' records outlive them, as right after a crash.
    hosts = [stack.host(key, name, heartbeat_s=10) for name in ("h1", "h2")]
    wait_until(lambda: warm(registry) == ["h1", "h2"], timeout_s=15, what="two warm hosts")
    for host in hosts:
        host.kill()
    status, body, took = timed_run(router, {"x": 1}, deadline_s=10)
    assert status == 200 and "error" in body
    assert "model host h1 failed" in body["error"] and "model host h2 failed" in body["error"], body
    assert "tried on 2 hosts" in body["error"]
    assert took < 2.0, f"it waited {took:.2f}s behind hosts it had seen fail"
    assert {h.host_id for h in registry.hosts() if h.unreachable} == {"h1", "h2"}  # the scaler sees it


def test_a_failed_host_is_reported_and_the_run_goes_to_a_live_one(stack, redis_server):
    router, key = start_router(stack)
    registry = stack.registry(heartbeat_ttl_s=30)
    dead = stack.host(key, "h1", heartbeat_s=10)
    stack.host(key, "h2", heartbeat_s=10)
    wait_until(lambda: warm(registry) == ["h1", "h2"], timeout_s=15, what="two warm hosts")
    dead.kill()
    for i in range(4):  # whichever host acquire picks first, every run is answered
        status, body, took = timed_run(router, {"x": i})
        assert status == 200 and body["echo"] == i, body
        assert took < 2.0
    assert [h.host_id for h in registry.hosts() if h.unreachable] == ["h1"]


def test_the_deadline_passing_during_a_forward_is_a_clear_error_and_frees_the_slot(stack, registry):
    router, key = start_router(stack)
    stack.host(key, "h1")
    wait_until(lambda: warm(registry) == ["h1"], timeout_s=15, what="the host to turn warm")
    status, body, took = timed_run(router, {"sleep": 3, "x": 1}, deadline_s=1.0)
    # The host enforces the same deadline: whichever answers first, the error says "deadline".
    assert status == 200, body
    assert "exceeded its time limit" in body["error"] or "before the deadline" in body["error"], body
    assert 0.8 < took < 2.0
    assert registry.hosts()[0].slots_in_use == 0 and not registry.hosts()[0].unreachable
    status, body, _ = timed_run(router, {"x": 2})  # nothing else disturbed
    assert status == 200 and body["echo"] == 2


# ------------------------------------------------------------------- hosts that answer badly
class _FakeHost(http.server.BaseHTTPRequestHandler):
    """A host that heartbeats like a real one but answers every forwarded run with `answer`."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status, payload = self.server.answer  # type: ignore[attr-defined]
        self.server.calls += 1  # type: ignore[attr-defined]
        time.sleep(self.server.delay_s)  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_host(registry) -> Iterator:
    servers: list[http.server.ThreadingHTTPServer] = []
    stop = threading.Event()

    def make(
        key: str, host_id: str, status: int, payload: bytes, delay_s: float = 0.0
    ) -> http.server.ThreadingHTTPServer:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHost)
        server.answer, server.calls, server.delay_s = (status, payload), 0, delay_s  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        record = HostRecord(host_id=host_id, address=f"127.0.0.1:{server.server_address[1]}",
                            namespace="guest", actions=(key,), models=(), state="warm", limit=4)  # fmt: skip

        def beat() -> None:
            while not stop.is_set():
                registry.heartbeat(record)
                stop.wait(0.2)

        threading.Thread(target=beat, daemon=True).start()
        servers.append(server)
        return server

    yield make
    stop.set()
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (500, b"<html>Internal Server Error</html>", "refused the activation: HTTP 500"),
        (200, b"this is not JSON", "sent an unreadable answer"),
        (200, b'{"no": "envelope"}', "sent an unreadable answer"),
    ],
)
def test_a_host_answering_non_200_or_garbage_gives_a_clear_error(
    stack, registry, fake_host, status, payload, expected
):
    router, key = start_router(stack)
    server = fake_host(key, "fake", status, payload)
    wait_until(lambda: warm(registry) == ["fake"], what="the fake host's heartbeat")
    code, body, took = timed_run(router, {"x": 1})
    assert code == 200 and expected in body["error"], body
    assert took < 2.0 and server.calls == 1  # answered, not retried: the host may have run it
    assert registry.hosts()[0].slots_in_use == 0


def test_a_host_that_hangs_past_the_deadline_gives_a_deadline_error_at_the_deadline(
    stack, registry, fake_host
):
    router, key = start_router(stack)
    fake_host(key, "hung", 200, b"{}", delay_s=5.0)
    wait_until(lambda: warm(registry) == ["hung"], what="the fake host's heartbeat")
    code, body, took = timed_run(router, {"x": 1}, deadline_s=1.0)
    assert code == 200 and "model host hung did not answer before the deadline" in body["error"], body
    assert 0.8 < took < 2.0
    host = registry.hosts()[0]
    assert host.slots_in_use == 0 and not host.unreachable  # slow is not unreachable


def test_a_host_answering_503_is_skipped_for_another(stack, registry, fake_host):
    router, key = start_router(stack)
    server = fake_host(key, "a-shutting-down", 503, b'{"error": "shutting down"}')  # sorts first
    stack.host(key, "h1")
    wait_until(lambda: warm(registry) == ["a-shutting-down", "h1"], timeout_s=15, what="both hosts")
    code, body, _ = timed_run(router, {"x": 5})
    assert code == 200 and body["echo"] == 5, body
    assert server.calls == 1


# ------------------------------------------------------------------------------ Redis trouble
def test_redis_stopped_mid_forward_and_back(stack, redis_server):
    router, key = start_router(stack)
    registry = stack.registry()
    stack.host(key, "h1")
    wait_until(lambda: warm(registry) == ["h1"], timeout_s=15, what="the host to turn warm")

    answer: dict = {}
    thread = threading.Thread(target=lambda: answer.update(r=timed_run(router, {"sleep": 1.5, "x": 1})))
    thread.start()
    wait_until(lambda: registry.hosts()[0].slots_in_use == 1, what="the forward to start")
    redis_server.stop()  # mid-forward: the host runs the activation without Redis
    thread.join(timeout=15)
    status, body, took = answer["r"]
    assert status == 200 and body["echo"] == 1, body  # the answer stands; only the release failed
    assert took < 3.0

    status, body, took = timed_run(router, {"x": 2}, deadline_s=2)  # Redis still down
    assert status == 200 and "the registry could not be reached" in body["error"], body
    assert took < 2.5

    redis_server.restart()  # back, empty: no scripts, no namespace users, no keys
    stack.maintain()  # what the scaler does on its next tick; the host re-registers by heartbeat
    status, body, took = timed_run(router, {"x": 3}, deadline_s=10)
    assert status == 200 and body["echo"] == 3, body
    assert took < 5.0
    assert registry.action_spec(key) is not None  # the router registered the action again


def test_an_unregistered_action_is_registered_again_by_the_router(stack, registry, redis_server):
    router, key = start_router(stack)
    redis_server.client().flushdb()  # the registration is gone (keys lost; users and scripts kept)
    assert registry.action_spec(key) is None
    # A new host can load the action only from its registration: the router puts it back while
    # its run waits for a slot.
    stack.host(key, "h-new")
    status, body, _ = timed_run(router, {"x": 9}, deadline_s=20)
    assert status == 200 and body["echo"] == 9, body
    assert registry.action_spec(key) is not None


def test_a_host_asked_for_an_unregistered_action_answers_404_json(stack, registry):
    _router, key = start_router(stack)
    host = stack.host(key, "h1")
    wait_until(lambda: warm(registry) == ["h1"], timeout_s=15, what="the host to turn warm")

    def forward(action: str) -> tuple[int, dict]:
        headers = {"X-Warmwhisk-Action": action, "X-Warmwhisk-Host-Token": stack.tokens["h1"]}
        response = host.session.post(host.url + "/run", data=json.dumps({"value": {"x": 1}}), headers=headers)
        return response.status_code, response.json()

    status, body = forward("/guest/nothing@0123456789abcdef")
    assert status == 404 and "not registered" in body["error"]
    status, body = forward(key)  # the host still serves its own action
    assert status == 200 and body["body"]["echo"] == 1
