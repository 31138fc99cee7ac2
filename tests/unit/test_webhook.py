"""Webhook signatures, the strict HTTP reader and its limits, the legacy metric format, and
the config difference a reload applies.

The HTTP tests at the bottom run the real listener on loopback with a stand-in for the
daemon (a dict of services with a wake event): they test the HTTP layer, not reconcile."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from dataclasses import dataclass, field, replace

import pytest

from pgo import config, httpd, metrics, reload
from pgo.httpd import HttpError, body_length, parse_head, route
from pgo.webhook import Verdict, hub_signature, verify

SECRET = "correct horse battery staple"
BODY = b'{"ref":"refs/heads/main"}'


# -- signatures -----------------------------------------------------------------------------

def test_hub_signature_is_hmac_sha256_of_the_body():
    mac = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert hub_signature(SECRET, BODY) == "sha256=" + mac


@pytest.mark.parametrize("headers, verdict", [
    ({"x-hub-signature-256": hub_signature(SECRET, BODY)}, Verdict.OK),
    ({"x-hub-signature-256": hub_signature(SECRET, BODY + b" ")}, Verdict.BAD),
    ({"x-hub-signature-256": hub_signature("other secret", BODY)}, Verdict.BAD),
    ({"x-hub-signature-256": hub_signature(SECRET, BODY).upper()}, Verdict.BAD),
    ({"x-hub-signature-256": hub_signature(SECRET, BODY)[7:]}, Verdict.BAD),  # no "sha256="
    ({"x-hub-signature-256": ""}, Verdict.BAD),
    ({"x-gitea-signature": hub_signature(SECRET, BODY)[7:]}, Verdict.OK),
    ({"x-forgejo-signature": hub_signature(SECRET, BODY)[7:]}, Verdict.OK),
    ({"x-gitea-signature": "00" * 32}, Verdict.BAD),
    ({"x-gitlab-token": SECRET}, Verdict.OK),
    ({"x-gitlab-token": SECRET + " "}, Verdict.BAD),
    ({"x-gitlab-token": SECRET[:-1]}, Verdict.BAD),
    ({"x-gitlab-token": ""}, Verdict.BAD),
    ({}, Verdict.MISSING),
    ({"x-hub-signature": "sha1=" + "0" * 40}, Verdict.MISSING),  # SHA-1 is not accepted
    # every header present must be right: one good one does not excuse a bad one
    ({"x-gitlab-token": SECRET, "x-hub-signature-256": "sha256=" + "0" * 64}, Verdict.BAD),
    ({"x-gitlab-token": SECRET, "x-hub-signature-256": hub_signature(SECRET, BODY)},
     Verdict.OK),
])
def test_verify(headers, verdict):
    assert verify(SECRET, headers, BODY) is verdict


def test_gitlab_token_with_non_ascii_secret():
    secret = "schlüssel-geheim"
    # a header value arrives as bytes; the parser decodes them as latin-1
    wire = secret.encode().decode("latin-1")
    assert verify(secret, {"x-gitlab-token": wire}, b"") is Verdict.OK
    assert verify(secret, {"x-gitlab-token": "schlussel-geheim"}, b"") is Verdict.BAD


# -- request head ---------------------------------------------------------------------------

def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_parse_a_webhook_request():
    req = parse_head(head("POST /hooks/web?x=1 HTTP/1.1", "Host: h", "Content-Length: 25",
                          "X-Hub-Signature-256:  sha256=ab  ", "X-Multi: a", "x-multi: b"))
    assert (req.method, req.path, req.version) == ("POST", "/hooks/web", "HTTP/1.1")
    assert req.headers["x-hub-signature-256"] == "sha256=ab"
    assert req.headers["x-multi"] == "a, b"
    assert body_length(req) == 25


@pytest.mark.parametrize("raw, status", [
    (head("GET /metrics HTTP/2.0", "Host: h"), 505),
    (head("GET /metrics FOO/1.1", "Host: h"), 400),
    (head("GET  /metrics HTTP/1.1", "Host: h"), 400),
    (head("GET metrics HTTP/1.1", "Host: h"), 400),
    (head("GET http://x/metrics HTTP/1.1", "Host: h"), 400),
    (head("GET /met rics HTTP/1.1", "Host: h"), 400),
    (head("G(T /metrics HTTP/1.1", "Host: h"), 400),
    (head("GET /metrics HTTP/1.1"), 400),  # HTTP/1.1 without Host
    (head("GET /metrics HTTP/1.1", "Host: h", "Bad Name: x"), 400),
    (head("GET /metrics HTTP/1.1", "Host: h", "Name : x"), 400),  # space before the colon
    (head("GET /metrics HTTP/1.1", "Host: h", "X: a", " folded"), 400),  # obs-fold
    (head("GET /metrics HTTP/1.1", "Host: h", "X: a\x00b"), 400),
    (head("GET /metrics HTTP/1.1", "Host: h", "X: a\x1bb"), 400),
    (head("GET /metrics HTTP/1.1", "Host: h", "nocolon"), 400),
    (head("GET /metrics HTTP/1.1", "Host: h", "Host: i"), 400),
    (head("POST /hooks/a HTTP/1.1", "Host: h", "Content-Length: 1", "Content-Length: 1"), 400),
    (b"GET /metrics HTTP/1.1\r\nHost: h\r\n", 400),  # not terminated
    (head("GET /metrics HTTP/1.1", "Host: h", *[f"X-{i}: {i}" for i in range(65)]), 431),
    (head("GET /metrics HTTP/1.1", "Host: h", "X: " + "a" * httpd.MAX_HEAD), 431),
])
def test_malformed_heads_are_refused(raw, status):
    with pytest.raises(HttpError) as e:
        parse_head(raw)
    assert e.value.status == status


def test_http_1_0_needs_no_host():
    assert parse_head(head("GET /metrics HTTP/1.0")).version == "HTTP/1.0"


@pytest.mark.parametrize("lines, status", [
    (["Content-Length: 1048577"], 413),
    (["Content-Length: 99999999999999999999"], 400),  # too many digits: refused, not parsed
    (["Content-Length: -1"], 400),
    (["Content-Length: +5"], 400),
    (["Content-Length: 1 2"], 400),
    (["Content-Length: \u00b2"], 400),  # a digit to str.isdigit, not an ASCII one
    (["Transfer-Encoding: chunked"], 411),
    (["Transfer-Encoding: chunked", "Content-Length: 3"], 411),
    ([], 411),  # a POST says how long its body is
])
def test_body_length_limits(lines, status):
    req = parse_head(head("POST /hooks/a HTTP/1.1", "Host: h", *lines))
    with pytest.raises(HttpError) as e:
        body_length(req)
    assert e.value.status == status


def test_body_length_at_the_cap_is_accepted():
    req = parse_head(head("POST /hooks/a HTTP/1.1", "Host: h",
                          f"Content-Length: {httpd.MAX_BODY}"))
    assert body_length(req) == httpd.MAX_BODY
    assert body_length(parse_head(head("GET /metrics HTTP/1.1", "Host: h"))) == 0


@pytest.mark.parametrize("method, path, expected", [
    ("GET", "/metrics", ("metrics", "")),
    ("HEAD", "/metrics", ("metrics", "")),
    ("POST", "/hooks/web-1", ("hook", "web-1")),
    ("GET", "/", ("status", "")),
    ("HEAD", "/", ("status", "")),
    ("GET", "/status.json", ("status.json", "")),
])
def test_routes(method, path, expected):
    assert route(method, path) == expected


@pytest.mark.parametrize("method, path, status", [
    ("POST", "/metrics", 405),
    ("GET", "/hooks/web", 405),
    ("PUT", "/hooks/web", 405),
    ("POST", "/hooks/", 404),
    ("POST", "/hooks/Web", 404),
    ("POST", "/hooks/a/b", 404),
    ("POST", "/hooks/../x", 404),
    ("POST", "/", 405),
    ("GET", "/index.html", 404),
    ("GET", "/status.json/", 404),
    ("GET", "/metrics/", 404),
])
def test_bad_routes(method, path, status):
    with pytest.raises(HttpError) as e:
        route(method, path)
    assert e.value.status == status


# -- metrics --------------------------------------------------------------------------------

def test_legacy_counters_keep_the_original_names():
    c = metrics.LegacyCounter("pgo_test_count", "help", ["service", "cmd", "subcmd"])
    c.inc("svc", "git", "fetch")
    c.inc("svc", "git", "fetch")
    c.inc("svc", "x", 'a"b\\c\nd')
    text = c.text()
    assert "# TYPE pgo_test_count counter\n" in text
    assert 'pgo_test_count{service="svc",cmd="git",subcmd="fetch"} 2\n' in text
    assert 'pgo_test_count{service="svc",cmd="x",subcmd="a\\"b\\\\c\\nd"} 1\n' in text
    assert "_total" not in text


def test_exposition_has_both_families():
    metrics.observe_command("unit-svc", ["docker", "compose", "-p", "x", "up", "-d"], 1)
    text = metrics.exposition().decode()
    assert 'pgo_command_count{service="unit-svc",cmd="compose",subcmd="up"}' in text
    assert 'pgo_command_error_count{service="unit-svc",cmd="compose",subcmd="up"}' in text
    assert "# TYPE pgo_reconcile_total counter" in text


# -- reload difference ----------------------------------------------------------------------

def svc(name: str, **kw: object) -> config.Service:
    return config.Service(name=name, user="root", repository="/r", **kw)  # type: ignore[arg-type]


def test_diff_added_removed_changed_unchanged():
    old = config.Config("p", (svc("a"), svc("b"), svc("c", env=(("K", "1"),))))
    new = config.Config("p", (svc("a"), svc("c", env=(("K", "2"),), branch="dev"), svc("d")))
    d = reload.diff(old, new)
    assert [s.name for s in d.added] == ["d"]
    assert d.removed == ("b",)
    assert [(s.name, keys) for s, keys in d.changed] == [("c", ("branch", "env"))]
    assert d.summary() == "1 added, 1 removed, 1 changed"
    assert not reload.diff(old, old)


def test_changed_keys_name_import_and_never_show_values():
    a = svc("a", webhook_secret="s3cret-one")
    b = replace(a, webhook_secret="s3cret-two", import_="Caddyfile")
    assert reload.changed_keys(a, b) == ("import", "webhook_secret")


def test_file_key_and_digest(tmp_path):
    p = tmp_path / "pgo.toml"
    assert reload.file_key(str(p)) is None and reload.file_digest(str(p)) is None
    p.write_text("x")
    k1, d1 = reload.file_key(str(p)), reload.file_digest(str(p))
    p.write_text("yy")
    assert reload.file_key(str(p)) != k1 and reload.file_digest(str(p)) != d1


# -- the listener, on loopback --------------------------------------------------------------

@dataclass
class FakeService:
    cfg: config.Service
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    log: logging.LoggerAdapter = field(  # type: ignore[type-arg]
        default_factory=lambda: logging.LoggerAdapter(logging.getLogger("test"), {}))
    woken_by: str = ""

    def wake_for(self, reason: str) -> None:
        self.woken_by = reason
        self.wake.set()


@dataclass
class FakeDaemon:
    services: dict[str, FakeService]


async def exchange(port: int, data: bytes, *, read_first: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def post(name: str, body: bytes, *headers: str) -> bytes:
    return head(f"POST /hooks/{name} HTTP/1.1", "Host: h", f"Content-Length: {len(body)}",
                *headers) + body


def status(resp: bytes) -> int:
    return int(resp.split(b" ", 2)[1])


@pytest.fixture
def served():
    """Run the listener for one test: (call(coro), daemon, port)."""
    loop = asyncio.new_event_loop()
    daemon = FakeDaemon({
        "web": FakeService(svc("web", webhook_secret=SECRET)),
        "nosecret": FakeService(svc("nosecret")),
    })
    server = httpd.HttpServer(daemon, timeout=0.5, max_connections=4)  # type: ignore[arg-type]
    loop.run_until_complete(server.start("127.0.0.1", 0))
    assert server.server is not None
    port = server.server.sockets[0].getsockname()[1]
    yield loop.run_until_complete, daemon, port
    loop.run_until_complete(server.aclose())
    loop.close()


def test_signed_hook_wakes_the_service(served):
    call, daemon, port = served
    resp = call(exchange(port, post("web", BODY, "X-Hub-Signature-256: "
                                    + hub_signature(SECRET, BODY))))
    assert status(resp) == 202, resp
    assert b"Connection: close" in resp and resp.endswith(b"reconcile of web queued\n")
    assert daemon.services["web"].wake.is_set()
    assert daemon.services["web"].woken_by == "webhook"


@pytest.mark.parametrize("name, extra, code", [
    ("web", ["X-Hub-Signature-256: sha256=" + "0" * 64], 401),
    ("web", [], 401),
    ("web", ["X-Gitlab-Token: wrong"], 401),
    ("nosecret", ["X-Gitlab-Token: anything"], 404),
    ("nosecret", [], 404),
    ("nosuch", ["X-Gitlab-Token: " + SECRET], 404),
])
def test_refused_hooks_wake_nothing(served, name, extra, code):
    call, daemon, port = served
    resp = call(exchange(port, post(name, BODY, *extra)))
    assert status(resp) == code, resp
    assert not any(s.wake.is_set() for s in daemon.services.values())


def test_client_text_is_logged_escaped(served, caplog):
    """An event header is the client's text: a NEL or CSI in it (latin-1 on the wire) is
    logged escaped, never as a line break or a terminal control."""
    call, _, port = served
    event = "push\x85[ERROR] forged\x9b2J"
    with caplog.at_level(logging.INFO):
        resp = call(exchange(port, post("web", BODY, "X-Hub-Signature-256: "
                                        + hub_signature(SECRET, BODY),
                                        "X-GitHub-Event: " + event)))
    assert status(resp) == 202, resp
    [msg] = [r.getMessage() for r in caplog.records if "reconciling now" in r.getMessage()]
    assert msg == "webhook (push\\x85[ERROR] forged\\x9b2J): reconciling now"


def test_metrics_endpoint(served):
    call, _, port = served
    resp = call(exchange(port, head("GET /metrics HTTP/1.1", "Host: h")))
    assert status(resp) == 200
    assert b"# TYPE pgo_command_count counter" in resp
    resp = call(exchange(port, head("HEAD /metrics HTTP/1.1", "Host: h")))
    assert status(resp) == 200 and resp.endswith(b"\r\n\r\n")


def test_oversize_body_is_refused_before_it_is_read(served):
    call, _, port = served
    resp = call(exchange(port, head("POST /hooks/web HTTP/1.1", "Host: h",
                                    f"Content-Length: {httpd.MAX_BODY + 1}")))
    assert status(resp) == 413


def test_oversize_head_is_refused(served):
    call, _, port = served
    resp = call(exchange(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (httpd.MAX_HEAD + 10)))
    assert status(resp) == 431


def test_slow_client_times_out(served):
    """A client that never finishes its request (slowloris) is answered 408 and cut off."""
    call, _, port = served
    resp = call(exchange(port, b"POST /hooks/web HTTP/1.1\r\nHost: h\r\n"))
    assert status(resp) == 408
    resp = call(exchange(port, head("POST /hooks/web HTTP/1.1", "Host: h", "Content-Length: 10")
                         + b"short"))
    assert status(resp) == 408


def test_connections_beyond_the_cap_get_503(served):
    call, _, port = served

    async def many() -> bytes:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        await asyncio.sleep(0.05)  # let the server accept them
        try:
            return await exchange(port, head("GET /metrics HTTP/1.1", "Host: h"))
        finally:
            for _, w in idle:
                w.close()

    assert status(call(many())) == 503

    async def until_served() -> list[int]:
        # the idle ones went away: their places are free again
        codes = []
        for _ in range(100):
            codes.append(status(await exchange(port, head("GET /metrics HTTP/1.1", "Host: h"))))
            if codes[-1] == 200:
                break
            await asyncio.sleep(0.05)
        return codes

    assert call(until_served())[-1] == 200


def test_expect_continue(served):
    call, daemon, port = served

    async def go() -> tuple[bytes, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head("POST /hooks/web HTTP/1.1", "Host: h", f"Content-Length: {len(BODY)}",
                          "Expect: 100-continue", "X-Gitlab-Token: " + SECRET))
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(BODY)
        rest = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return interim, rest

    interim, rest = call(go())
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert status(rest) == 202
