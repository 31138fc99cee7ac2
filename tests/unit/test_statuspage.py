"""The status page's renderer (escaping, no secrets, one bounded line per text, the JSON
twin) and its two routes on the real listener with a snapshot provider. The page in a
real browser: tests/e2e/test_statuspage.py."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from pgo import httpd, statuspage
from pgo.statuspage import (
    Commit,
    ContainerStatus,
    Deploy,
    ServiceStatus,
    Snapshot,
    State,
    reason_line,
)

NOW = 1_800_000_000.0
TOKEN = "ghp_s3cr3tT0ken"
ENV_VALUE = "db-password-hunter2"
EVIL = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def snapshot(*services: ServiceStatus) -> Snapshot:
    return Snapshot(host="box1", at=NOW, services=services, version="0.1.0")


SHOP = ServiceStatus(
    name="shop", state=State.FAILED,
    reason=reason_line(f"commit 3c4d5e6f: compose up: exit 1: auth {TOKEN} refused\n"
                       f"PASSWORD={ENV_VALUE}", [TOKEN, ENV_VALUE]),
    desired=Commit("3c4d5e6f" + "0" * 32, NOW - 120), applied=Commit("1a2b3c4d" + "0" * 32,
                                                                     NOW - 86400 * 3),
    applied_at=NOW - 7200,
    containers=(ContainerStatus("shop-web-1", "web", "running", "healthy",
                                "Up 2 hours (healthy)"),
                ContainerStatus("shop-db-1", "db", "exited", "", "Exited (137) 1 minute ago")),
    last_deploy=Deploy("3c4d5e6f" + "0" * 32, NOW - 60, "failed", "webhook", 12.34,
                       "web-1 exited (1)"),
    history=tuple(Deploy(f"{i:08x}", NOW - 600 * i, "deployed", "poll", 1.0)
                  for i in range(1, 9)),
)
EVIL_SVC = ServiceStatus(
    name="web", state=State.HELD, reason=EVIL,
    applied=Commit("abcdef12"),
    containers=(ContainerStatus(EVIL, EVIL, EVIL, EVIL, EVIL),),
    last_deploy=Deploy(EVIL, NOW, EVIL, EVIL, None, EVIL),
    history=(Deploy(EVIL, NOW, "refused", EVIL, 1.0, EVIL),),
)


def test_everything_a_team_writes_is_escaped() -> None:
    page = statuspage.render_html(snapshot(EVIL_SVC))
    assert "<script" not in page and "<img" not in page and "onerror=alert(2)>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img" in page
    # every tag on the page is one the renderer wrote
    tags = set(re.findall(r"<([a-z0-9]+)", page))
    assert tags <= {"html", "head", "meta", "title", "style", "body", "header", "h1", "div",
                    "span", "a", "ul", "li", "main", "section", "h2", "p", "dl", "dt", "dd",
                    "code", "details", "summary", "ol"}


def test_no_secret_on_the_page_or_in_the_json() -> None:
    for out in (statuspage.render_html(snapshot(SHOP)),
                statuspage.render_json(snapshot(SHOP)).decode()):
        assert TOKEN not in out and ENV_VALUE not in out
        assert "auth *** refused PASSWORD=***" in out  # one line, redacted


def test_the_page() -> None:
    page = statuspage.render_html(snapshot(SHOP, replace(SHOP, name="api", state=State.RUNNING,
                                                         reason="")))
    assert '<meta http-equiv="refresh" content="10">' in page
    assert 'name="viewport" content="width=device-width,initial-scale=1"' in page
    assert page.index('id="svc-shop"') < page.index('id="svc-api"')  # worst first
    assert '<span class="st failed">failed</span>' in page
    assert "<title>⚠ pgod · box1</title>" in page
    assert ('<li class="chip"><span class="dot bad"></span> 1 failed</li>'
            '<li class="chip"><span class="dot ok"></span> 1 running</li>') in page
    assert "3d ago" not in page  # the applied commit's age is when it was brought up:
    assert "2h ago" in page and "2m ago" in page  # 2h; upstream's commit: 2 minutes
    assert "</code> in 12.3s (webhook) <span" in page
    assert page.count("<li><span class=\"o-deployed\">") == 2 * statuspage.HISTORY
    assert "shop-db-1</code> exited" in page and 'class="dot bad"' in page
    assert "shop-web-1</code> running, healthy" in page


def test_the_style_is_allowed_by_its_hash_and_nothing_else() -> None:
    page = statuspage.render_html(snapshot(SHOP))
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in statuspage.CSP
    assert "default-src 'none'" in statuspage.CSP and "script" not in statuspage.CSP


def test_no_services() -> None:
    page = statuspage.render_html(snapshot())
    assert "no services tracked" in page and "<title>pgod · box1</title>" in page


def test_json_is_the_same_data() -> None:
    doc = json.loads(statuspage.render_json(snapshot(SHOP)))
    assert doc["host"] == "box1" and doc["at"] == NOW
    (svc,) = doc["services"]
    assert svc["name"] == "shop" and svc["state"] == "failed"
    assert svc["applied"] == {"sha": "1a2b3c4d" + "0" * 32, "time": NOW - 86400 * 3}
    assert svc["containers"][0] == {"name": "shop-web-1", "service": "web", "state": "running",
                                    "health": "healthy", "status": "Up 2 hours (healthy)"}
    assert svc["last_deploy"]["outcome"] == "failed"
    assert len(svc["history"]) == statuspage.HISTORY
    evil = json.loads(statuspage.render_json(snapshot(EVIL_SVC)))
    assert evil["services"][0]["reason"] == EVIL  # JSON is data: escaped by its encoder


def test_texts_are_one_bounded_line() -> None:
    long = ServiceStatus("x", State.FAILED, reason="a\nb\r\n" + "y" * 5000)
    doc = json.loads(statuspage.render_json(snapshot(long)))
    assert doc["services"][0]["reason"].startswith("a b yyy")
    assert len(doc["services"][0]["reason"]) == statuspage.MAX_TEXT
    assert "a b yyy" in statuspage.render_html(snapshot(long))


def test_containers_from_the_engine_listing() -> None:
    from pgo.engine import Container

    def c(name: str, oneoff: bool) -> Container:
        return Container("id", name, "shop", "web", "running", "healthy",
                         "Up 1 minute (healthy)", "h" * 64, 1, oneoff, 0.0)

    assert statuspage.containers_of([c("shop-web-1", False), c("shop-web-run-1", True)]) == (
        ContainerStatus("shop-web-1", "web", "running", "healthy", "Up 1 minute (healthy)"),)


@pytest.mark.parametrize(("then", "text"), [(NOW, "0s ago"), (NOW - 59, "59s ago"),
                                            (NOW - 61, "1m ago"), (NOW - 7300, "2h ago"),
                                            (NOW - 86400 * 3, "3d ago"), (0, ""),
                                            (NOW + 50, "0s ago")])
def test_age(then: float, text: str) -> None:
    assert statuspage.age(then, NOW) == text


# -- on the listener -----------------------------------------------------------------------

class Provider:
    def __init__(self) -> None:
        self.calls = 0
        self.fail: BaseException | None = None
        self.hang = False

    async def __call__(self) -> Snapshot:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        if self.hang:
            await asyncio.Event().wait()
        return snapshot(SHOP)


@pytest.fixture
def page_server() -> Iterator[tuple[Any, Provider, int]]:
    loop = asyncio.new_event_loop()
    provider = Provider()
    server = httpd.HttpServer(None, status=provider, status_timeout=0.5)  # type: ignore[arg-type]
    loop.run_until_complete(server.start("127.0.0.1", 0))
    assert server.server is not None
    port = server.server.sockets[0].getsockname()[1]
    yield loop.run_until_complete, provider, port
    loop.run_until_complete(server.aclose())
    loop.close()


async def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v for k, _, v in (ln.partition(": ") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_the_page_and_its_json_are_served(page_server) -> None:  # type: ignore[no-untyped-def]
    call, provider, port = page_server
    status, headers, body = call(get(port, "/"))
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert headers["content-security-policy"] == statuspage.CSP
    assert headers["cache-control"] == "no-store" and headers["x-frame-options"] == "DENY"
    assert b"shop" in body and TOKEN.encode() not in body
    status, headers, body = call(get(port, "/status.json"))
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body)["services"][0]["name"] == "shop"
    status, _, body = call(get(port, "/", "HEAD"))
    assert status == 200 and body == b""
    assert call(get(port, "/", "POST"))[0] == 405
    assert provider.calls == 3


def test_a_provider_that_fails_or_hangs(page_server, caplog) -> None:  # type: ignore[no-untyped-def]
    call, provider, port = page_server
    provider.fail = RuntimeError(f"boom {TOKEN}")
    with caplog.at_level(logging.ERROR, "pgo.httpd"):
        assert call(get(port, "/"))[0] == 500
        assert call(get(port, "/status.json"))[0] == 500
    assert len(caplog.records) == 1  # once, not per request
    assert TOKEN not in caplog.records[0].getMessage()
    provider.fail = None
    provider.hang = True
    assert call(get(port, "/"))[0] == 503
    provider.hang = False
    assert call(get(port, "/"))[0] == 200


def test_no_provider_no_page() -> None:
    async def go() -> int:
        server = httpd.HttpServer(None)  # type: ignore[arg-type]
        await server.start("127.0.0.1", 0)
        assert server.server is not None
        try:
            return (await get(server.server.sockets[0].getsockname()[1], "/"))[0]
        finally:
            await server.aclose()

    assert asyncio.run(go()) == 404
