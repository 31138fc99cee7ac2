"""The status page in a real browser: Debian's headless Chromium loads it from the real
listener (a snapshot provider stands in for the daemon), at a phone's width; the DOM holds
every service's name and state and no secret; a screenshot is kept in the test's
directory (look at it: it is what a phone shows)."""

from __future__ import annotations

import asyncio
import html
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pgo import httpd
from pgo.statuspage import (
    Commit,
    ContainerStatus,
    Deploy,
    ServiceStatus,
    Snapshot,
    State,
    reason_line,
)
from tests.e2e import harness as h

CHROMIUM = shutil.which("chromium")
TOKEN = "glpat-s3cr3t-t0ken"
ENV_VALUE = "hunter2-db-password"
NOW = 1_800_000_000.0


def services() -> tuple[ServiceStatus, ...]:
    web = ContainerStatus("shop-web-1", "web", "running", "healthy", "Up 2 hours (healthy)")
    db = ContainerStatus("shop-db-1", "db", "running", "", "Up 2 hours")
    hist = tuple(Deploy(f"{i:x}" * 8, NOW - 3600 * i, "deployed", "poll", 2.0 + i)
                 for i in range(1, 6))
    base = ServiceStatus("shop", State.RUNNING, desired=Commit("a1" * 20, NOW - 7200),
                         applied=Commit("a1" * 20, NOW - 7200), applied_at=NOW - 7000,
                         containers=(web, db), history=hist,
                         last_deploy=Deploy("a1" * 20, NOW - 7000, "deployed", "webhook", 4.2))
    return (
        base,
        replace(base, name="blog", state=State.FAILED, desired=Commit("b2" * 20, NOW - 300),
                reason=reason_line(f"commit b2b2b2b2: compose up: pull access denied, token "
                                   f"{TOKEN}", [TOKEN]),
                containers=(replace(web, name="blog-web-1", state="exited", health="",
                                    status="Exited (1) 4 minutes ago"),),
                last_deploy=Deploy("b2" * 20, NOW - 240, "rolled back", "poll", 130.0,
                                   "blog-web-1 exited (1)")),
        replace(base, name="wiki", state=State.REFUSED, desired=Commit("c3" * 20, NOW - 60),
                reason="commit c3c3c3c3 refused: compose service app: privileged "
                       "[own-privileges]"),
        replace(base, name="shop-staging", state=State.DEPLOYING),
        replace(base, name="legacy", state=State.HELD, reason="held by //down"),
        replace(base, name="docs", state=State.FROZEN, behind=4,
                desired=Commit("d4" * 20, NOW - 900), reason="frozen by //rollback"),
        replace(base, name="<b>old</b>", state=State.STOPPED, containers=(),
                reason=f"stop file present; PASSWORD={ENV_VALUE}".replace(ENV_VALUE, "***")),
    )


@pytest.fixture
def page() -> Iterator[int]:
    """The listener with a snapshot provider, in a loop of its own; yields its port."""
    loop = asyncio.new_event_loop()
    snapshot = Snapshot("box1", NOW, services(), "0.1.0")

    async def provider() -> Snapshot:
        return snapshot

    server = httpd.HttpServer(None, status=provider)  # type: ignore[arg-type]
    port = h.free_port()
    loop.run_until_complete(server.start("127.0.0.1", port))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield port
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.run_until_complete(server.aclose())
    loop.close()


def chromium(tmp: Path, url: str, *mode: str) -> str:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"  # a new one each time
    r = h.run(CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
              "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
              "--window-size=390,844", *mode, url, timeout=120)
    return r.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/setup.sh --test)")
def test_the_status_page_in_chromium(page: int, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{page}/"
    dom = chromium(tmp_path, url, "--dump-dom")
    names = re.findall(r'<section class="svc (\w+)" id="svc-([^"]+)">', dom)
    assert [(html.unescape(n), s) for s, n in names] == [
        ("blog", "failed"), ("wiki", "refused"), ("shop-staging", "deploying"),
        ("legacy", "held"), ("docs", "frozen"), ("<b>old</b>", "stopped"), ("shop", "running")]
    for state in State:
        assert f'<span class="st {state.value}">{state.value}</span>' in dom
    assert "<b>old</b>" not in dom and "&lt;b&gt;old&lt;/b&gt;" in dom
    assert TOKEN not in dom and ENV_VALUE not in dom
    assert "pull access denied, token ***" in dom
    assert '<meta http-equiv="refresh" content="10">' in dom

    shot = tmp_path / "status-page.png"
    chromium(tmp_path, url, f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    json_dom = chromium(tmp_path, url + "status.json", "--dump-dom")
    assert '"name": "wiki"' in json_dom and TOKEN not in json_dom
