"""pgod's HTTP listener end to end: /metrics after a real deploy, and webhooks that make a
real pgod deploy a pushed commit long before its poll interval (-t 5m)."""

from __future__ import annotations

import http.client
import re
import socket
import threading
from pathlib import Path

from pgo.webhook import hub_signature
from tests.e2e import harness as h

SECRET = "webhook-secret-for-tests"
ENV_WEB = h.WEB + '    environment:\n      V: "${V:-0}"\n'


def service(name: str, up: h.Upstream, **kw: object) -> dict[str, object]:
    return {"name": name, "user": h.USER, "repository": up.url, **kw}


def start(base: Path, pgods: list[h.Pgod], services: list[dict[str, object]],
          **kw: object) -> h.Pgod:
    p = h.Pgod(base, services, **kw)  # type: ignore[arg-type]
    pgods.append(p)
    return p.start()


def request(pgod: h.Pgod, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", pgod.metric_port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def hook(pgod: h.Pgod, name: str, body: bytes = b'{"ref":"refs/heads/main"}',
         **headers: str) -> int:
    hdrs = {"Content-Type": "application/json", **{k.replace("_", "-"): v
                                                  for k, v in headers.items()}}
    return request(pgod, "POST", f"/hooks/{name}", body, hdrs)[0]


def github(pgod: h.Pgod, name: str, secret: str = SECRET) -> int:
    body = b'{"ref":"refs/heads/main","after":"x"}'
    return hook(pgod, name, body, X_GitHub_Event="push",
                X_Hub_Signature_256=hub_signature(secret, body))


def metrics(pgod: h.Pgod) -> str:
    status, text = request(pgod, "GET", "/metrics")
    assert status == 200
    return text


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample, whatever the order of its labels."""
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1).split(",") for k, v in labels.items()):
            return float(m.group(2))
    return None


def push_change(up: h.Upstream, value: str) -> str:
    up.write("compose.yaml", ENV_WEB.replace("${V:-0}", value))
    return up.commit(f"V={value}")


def test_metrics_after_a_deploy(base, upstream, projects, pgods):
    name = h.unique()
    projects.append(name)
    pgod = start(base, pgods, [service(name, upstream)])
    pgod.wait_log(rf"\[{name}\] reconcile \(start\) done: deployed")
    text = metrics(pgod)
    # the original's names and labels, exactly
    assert "# TYPE pgo_command_count counter" in text
    assert sample(text, "pgo_command_count", service=name, cmd="git", subcmd="clone") == 1
    assert sample(text, "pgo_command_count", service=name, cmd="compose", subcmd="up") == 1
    assert sample(text, "pgo_command_count", service=name, cmd="compose", subcmd="config")
    assert "# TYPE pgo_command_error_count counter" in text
    # pgo's own: reconcile outcomes, their duration, the applied commit's time
    assert sample(text, "pgo_reconcile_total", service=name, outcome="deployed") == 1
    assert (sample(text, "pgo_reconcile_duration_seconds_count", service=name) or 0) >= 1
    commit_time = int(upstream.git("log", "-1", "--format=%ct"))
    assert sample(text, "pgo_applied_commit_timestamp_seconds", service=name) == commit_time
    # HEAD works, other methods are refused
    assert request(pgod, "HEAD", "/metrics") == (200, "")
    assert request(pgod, "POST", "/metrics")[0] == 405
    assert request(pgod, "GET", "/nothing")[0] == 404


def test_webhooks_deploy_now_and_refuse_strangers(base, upstream, projects, pgods):
    name, nosecret = h.unique(), h.unique()
    projects += [name, nosecret]
    upstream.write("compose.yaml", ENV_WEB)
    upstream.commit("interpolated")
    # -t 5m: only a webhook can explain a deploy within the test's time
    pgod = start(base, pgods, [service(name, upstream, webhook_secret=SECRET),
                               service(nosecret, upstream)], interval="5m")
    pgod.wait_log(rf"\[{name}\] reconcile \(start\) done: deployed")
    pgod.wait_log(rf"\[{nosecret}\] reconcile \(start\) done")

    commit = push_change(upstream, "1")
    assert github(pgod, name) == 202
    pgod.wait_log(rf"\[{name}\] deploying commit {commit[:8]}")
    # (the webhook wakes the tracker, whose pass says so; wait_log shows the log if not)
    pgod.wait_log(rf"\[{name}\] reconcile \(webhook\) done: deployed")
    assert pgod.state(name).get("applied_commit") == commit

    # GitLab's token header works the same
    commit = push_change(upstream, "2")
    assert hook(pgod, name, X_Gitlab_Token=SECRET, X_Gitlab_Event="Push Hook") == 202
    pgod.wait_log(rf"\[{name}\] deploying commit {commit[:8]}")

    # refused: wrong or missing signature (401), no such service or no secret (404),
    # a body over the cap (413); none of them reconciles anything
    commit = push_change(upstream, "3")
    before = pgod.count(rf"\[{name}\] reconcile \(")
    assert github(pgod, name, secret="not-the-secret") == 401
    assert hook(pgod, name) == 401
    assert hook(pgod, name, X_Gitlab_Token=SECRET[:-1]) == 401
    assert github(pgod, "no-such-service") == 404
    assert hook(pgod, nosecret, X_Gitlab_Token="anything at all") == 404
    assert github(pgod, nosecret) == 404
    assert oversize(pgod, name) == 413
    # (the log line may reach the test's reader a moment after the answer)
    pgod.wait_log(r"webhook refused: signature", count=3)
    # nothing ran: the refusals were answered without a reconcile in between
    assert pgod.count(rf"\[{name}\] reconcile \(") == before
    assert pgod.state(name).get("applied_commit") != commit

    text = metrics(pgod)
    assert sample(text, "pgo_webhooks_total", service=name, result="accepted") == 2
    assert sample(text, "pgo_webhooks_total", service=name, result="unauthorized") == 3
    assert sample(text, "pgo_webhooks_total", service="", result="not_found") == 1
    assert sample(text, "pgo_webhooks_total", service=nosecret, result="not_found") == 2


def oversize(pgod: h.Pgod, name: str) -> int:
    """Announce a body over 1 MiB; pgod answers before it is sent."""
    with socket.create_connection(("127.0.0.1", pgod.metric_port), timeout=30) as s:
        s.sendall(f"POST /hooks/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {2 << 20}\r\n"
                  f"X-Gitlab-Token: {SECRET}\r\n\r\n".encode())
        return int(s.makefile("rb").readline().split()[1])


def test_a_burst_of_webhooks_coalesces(base, upstream, projects, pgods):
    name = h.unique()
    projects.append(name)
    pgod = start(base, pgods, [service(name, upstream, webhook_secret=SECRET)],
                 interval="5m")
    pgod.wait_log(rf"\[{name}\] reconcile \(start\) done: deployed")
    upstream.write("compose.yaml", ENV_WEB)
    commit = upstream.commit("burst")
    done = rf"\[{name}\] reconcile \(.*\) done"
    mark = pgod.count(done)

    codes: list[int] = []
    threads = [threading.Thread(target=lambda: codes.append(github(pgod, name)))
               for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [202] * 20
    pgod.wait_log(rf"\[{name}\] deploying commit {commit[:8]}")
    # one more hook after the burst; once the loop goes idle after it, every pass the
    # hooks asked for is done (it logs "idle" only when no wake-up is pending)
    assert github(pgod, name) == 202
    pgod.wait_log(rf"\[{name}\] webhook \(push\): reconciling now", count=21)
    h.wait_until(lambda: idle_after_last_hook(pgod, name), what="the loop to go idle")
    passes = pgod.count(done) - mark
    # 21 hooks: at most the pass running when they came, one after it, one for the last
    assert 1 <= passes <= 3, pgod.log()[-3000:]
    assert pgod.count(rf"\[{name}\] deploying commit") == 2


def idle_after_last_hook(pgod: h.Pgod, name: str) -> bool:
    lines = pgod.log().splitlines()
    last_hook = max(i for i, ln in enumerate(lines) if f"[{name}] webhook (push)" in ln)
    return any(f"[{name}] idle for" in ln for ln in lines[last_hook:])
