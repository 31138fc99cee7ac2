"""Notifications delivered by the real Apprise to an HTTP receiver of the test's own on
loopback (json:// and form:// URLs): each event kind once, dedupe, a failing URL logged once
and redacted, a URL that does not answer in time, and `pgod notify-test`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pgo import notifications
from pgo.notifications import Kind, Notice, Notifier

PASSWORD = "hunter2-pass"
TOKEN = "t0psecret-token"


@dataclass
class Receiver:
    """Keeps every POST; answers `status`; a path under /hang/ waits for `release`."""

    status: int = 200
    got: list[tuple[str, str, bytes]] = field(default_factory=list)  # path, type, body
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def url(self, scheme: str, path: str = "hook", creds: bool = False) -> str:
        auth = f"hookuser:{PASSWORD}@" if creds else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/{path}?-X-Token={TOKEN}"

    def posts(self, path: str = "") -> list[tuple[str, str, bytes]]:
        with self.lock:
            return [g for g in self.got if g[0].startswith("/" + path)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the standard library's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path.startswith("/hang/"):
                rec.release.wait(30)
            with rec.lock:
                rec.got.append((self.path, self.headers.get("Content-Type", ""), body))
            status = 500 if self.path.startswith("/fail/") else rec.status
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    rec.release.set()
    server.shutdown()
    server.server_close()


def run_notifier(notifier: Notifier, *notices: Notice) -> list[bool]:
    async def go() -> list[bool]:
        task = asyncio.create_task(notifier.run())
        queued = [notifier.notify(n) for n in notices]
        await notifier.drain()
        task.cancel()
        return queued

    return asyncio.run(go())


def json_message(body: bytes) -> dict[str, str]:
    doc = json.loads(body)
    assert isinstance(doc, dict)
    return doc


KINDS = [
    Notice("shop", Kind.DEPLOYED, "1a2b3c4d5e6f7a8b", duration=4.25),
    Notice("shop", Kind.ROLLED_BACK, "2b3c4d5e6f7a8b9c",
           detail="web-1 exited (1); 1a2b3c4d runs again"),
    Notice("shop", Kind.FAILED, "3c4d5e6f7a8b9c0d", detail="compose up: exit status 1"),
    Notice("shop", Kind.REFUSED, "4d5e6f7a8b9c0d1e",
           detail="compose service web: privileged [own-privileges]"),
    Notice("shop", Kind.DRIFT_REPAIRED, "1a2b3c4d5e6f7a8b",
           detail="web: 1 container missing (0 of 1)"),
    Notice("shop", Kind.CRASH_LOOP, "1a2b3c4d5e6f7a8b",
           detail="crash loop: 5 repairs within 5m"),
    Notice("shop", Kind.UNREACHABLE, "1a2b3c4d5e6f7a8b",
           detail="git fetch: exit status 128: could not resolve host"),
]


def test_each_kind_is_delivered_once_to_json_and_form(receiver: Receiver) -> None:
    urls = [receiver.url("json", "j"), receiver.url("form", "f")]
    notifier = Notifier(lambda name: urls if name == "shop" else [], host="box1")
    queued = run_notifier(notifier, *KINDS, *KINDS)  # twice: the second round is dropped
    assert queued == [True] * len(KINDS) + [False] * len(KINDS)
    jsons = [json_message(b) for _, _, b in receiver.posts("j")]
    forms = [urllib.parse.parse_qs(b.decode()) for _, _, b in receiver.posts("f")]
    assert len(jsons) == len(forms) == len(KINDS)
    titles = sorted(j["title"] for j in jsons)
    assert titles == sorted([
        "shop: deployed 1a2b3c4d (on box1)", "shop: rolled back 2b3c4d5e (on box1)",
        "shop: commit 3c4d5e6f failed (on box1)",
        "shop: commit 4d5e6f7a refused by the policy (on box1)",
        "shop: drift repaired (on box1)", "shop: crash loop: left alone (on box1)",
        "shop: upstream unreachable for an hour (on box1)"])
    deployed = next(j for j in jsons if j["title"].startswith("shop: deployed"))
    assert deployed["message"].startswith("Service shop runs commit 1a2b3c4d5e6f in 4.2s.")
    assert deployed["type"] == "success"
    refused = next(j for j in jsons if "refused" in j["title"])
    assert "privileged [own-privileges]" in refused["message"] and refused["type"] == "warning"
    assert sorted(f["title"][0] for f in forms) == titles
    assert notifier.delivered == 2 * len(KINDS) and notifier.failed == 0


def test_dedupe_per_kind_and_commit() -> None:
    clock = [0.0]
    n = Notifier(lambda _: ["json://127.0.0.1:9/"], host="", clock=lambda: clock[0])
    failed = Notice("shop", Kind.FAILED, "c1")
    assert n.notify(failed) and not n.notify(failed)  # never one per pass
    assert n.notify(Notice("other", Kind.FAILED, "c1"))  # per service
    assert n.notify(Notice("shop", Kind.REFUSED, "c1"))  # per kind
    assert n.notify(Notice("shop", Kind.FAILED, "c2"))  # a new commit
    assert n.notify(failed)  # back to the first: a new event
    assert n.notify(Notice("shop", Kind.DEPLOYED, "c1", duration=1))
    assert n.notify(failed)  # a deploy in between: failing again is news
    assert not n.notify(Notice("shop", Kind.DEPLOYED, "c1", duration=1))
    drift = Notice("shop", Kind.DRIFT_REPAIRED, "c1", detail="web: 1 container missing")
    assert n.notify(drift) and not n.notify(drift)
    assert n.notify(Notice("shop", Kind.DRIFT_REPAIRED, "c1", detail="web: stopped"))
    assert n.notify(drift)
    clock[0] += notifications.REPEAT_AFTER
    assert n.notify(drift)  # the same drift an hour later
    test = Notice("shop", Kind.TEST)
    assert n.notify(test) and n.notify(test)  # a test is always sent
    outage = Notice("shop", Kind.UNREACHABLE, "c1", key="outage since 100")
    assert n.notify(outage) and not n.notify(outage)
    assert n.notify(Notice("shop", Kind.UNREACHABLE, "c1", key="outage since 900"))
    assert not Notifier(lambda _: [], host="").notify(failed)  # no URLs: nothing queued


def test_a_failing_url_is_logged_once_per_kind_and_redacted(receiver: Receiver,
                                                            caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    caplog.set_level(logging.DEBUG)
    good = receiver.url("json", "ok")
    bad = receiver.url("json", "fail/x", creds=True)
    notifier = Notifier(lambda _: [good, bad], host="h")
    run_notifier(notifier, Notice("shop", Kind.FAILED, "c1"), Notice("shop", Kind.FAILED, "c2"),
                 Notice("shop", Kind.REFUSED, "c2"), Notice("shop", Kind.FAILED, "c3"))
    assert len(receiver.posts("ok")) == 4 and len(receiver.posts("fail")) == 4
    lines = [r.getMessage() for r in caplog.records if r.name == "pgo.notifications"]
    assert len(lines) == 2, lines  # once for failed, once for refused
    assert lines[0].startswith("[shop] notification (failed) to json:// URL #2 failed: ")
    assert "(refused)" in lines[1]
    text = caplog.text + "\n".join(lines)
    for secret in (PASSWORD, TOKEN, "hookuser", "fail/x", str(receiver.port)):
        assert secret not in text, secret


def test_a_url_that_works_again_is_logged_again_when_it_fails(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    url = receiver.url("json", "flaky")
    notifier = Notifier(lambda _: [url], host="h")

    async def go() -> None:
        task = asyncio.create_task(notifier.run())
        for i, status in enumerate((500, 500, 200, 500)):
            receiver.status = status
            notifier.notify(Notice("shop", Kind.FAILED, f"c{i}"))
            await notifier.drain()
        task.cancel()

    asyncio.run(go())
    assert len(receiver.posts("flaky")) == 4
    assert caplog.text.count("notification (failed) to json:// URL #1 failed") == 2


def test_a_url_that_does_not_answer_in_time(receiver: Receiver,
                                            caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(lambda _: [receiver.url("json", "hang/x")], host="h", timeout=0.5)

    async def go() -> None:
        task = asyncio.create_task(notifier.run())
        assert notifier.notify(Notice("shop", Kind.FAILED, "c1"))  # returns at once
        await notifier.drain()
        task.cancel()

    asyncio.run(go())
    receiver.release.set()
    assert "failed: no answer within 0.5s" in caplog.text


def test_check_url() -> None:
    assert notifications.check_url("json://127.0.0.1:8080/x") == ""
    assert notifications.check_url("ntfy://user:pass@ntfy.example.org/topic") == ""
    assert "scheme 'https'" in notifications.check_url("https://example.org/x")
    assert "SCHEME://" in notifications.check_url("127.0.0.1:8080")


def test_redact_takes_out_every_part_of_the_url() -> None:
    url = f"slack://{TOKEN}/B1BRTD4JD/{PASSWORD}%21?x=y"
    text = f"Failed to send to {url}: token {TOKEN}, hook {PASSWORD}!, B1BRTD4JD"
    red = notifications.redact_url(text, url)
    assert TOKEN not in red and PASSWORD not in red and "B1BRTD4JD" not in red
    assert red.startswith("Failed to send to ***")
    assert notifications.label(url, 3) == "slack:// URL #3"


# -- pgod notify-test --------------------------------------------------------------------

def pgod(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgo.cli.pgod", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": ""})


def test_notify_test_command(receiver: Receiver, tmp_path: Path) -> None:
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    cfg = tmp_path / "pgo.toml"
    cfg.write_text(f'notify = ["{receiver.url("json", "default")}"]\n'
                   f'[[services]]\nname = "shop"\nuser = "{user}"\nrepository = "/r"\n'
                   f'notify = ["{receiver.url("form", "form1")}", '
                   f'"{receiver.url("json", "fail/y", creds=True)}"]\n'
                   f'[[services]]\nname = "web"\nuser = "{user}"\nrepository = "/r"\n')
    r = pgod("notify-test", "-c", str(cfg), "shop")
    assert r.returncode == 1, r
    assert r.stdout.splitlines() == ["shop: form:// URL #1: delivered",
                                     r.stdout.splitlines()[1]]
    assert r.stdout.splitlines()[1].startswith("shop: json:// URL #2: failed: ")
    for secret in (PASSWORD, TOKEN, "fail/y"):
        assert secret not in r.stdout + r.stderr
    (_, _, body), = receiver.posts("form1")
    assert urllib.parse.parse_qs(body.decode())["title"][0].startswith("shop: test message")
    r = pgod("notify-test", "-c", str(cfg), "web")
    assert (r.returncode, r.stdout) == (0, "web: json:// URL #1: delivered\n"), r
    r = pgod("notify-test", "-c", str(cfg), "nosuch")
    assert r.returncode == 2 and "no service 'nosuch'" in r.stderr, r
    r = pgod("notify-test", "-c", str(cfg))
    assert r.returncode == 2 and "required: NAME" in r.stderr, r
    cfg.write_text(f'[[services]]\nname = "quiet"\nuser = "{user}"\nrepository = "/r"\n')
    r = pgod("notify-test", "-c", str(cfg), "quiet")
    assert r.returncode == 2 and "no notify URLs" in r.stderr, r
