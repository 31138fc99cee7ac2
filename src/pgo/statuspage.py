"""The status page: every service at a glance, `GET /` (HTML) and `GET /status.json`.

A Snapshot is plain data that the daemon fills in (see `httpd.StatusProvider`); this module
only renders it. Every text in a snapshot is already safe to show: service and container
names, commits, states, and one-line reasons that the provider has redacted with the
service's secrets (`reason_line`). The renderer adds nothing else: no environment, no
config value, no token. It escapes everything it prints (names and messages come from
teams), flattens every text to one bounded line, and the page is a single server-rendered
document without scripts that refreshes itself (`<meta http-equiv="refresh">`).
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import html
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pgo.engine import Container
from pgo.runner import redact

REFRESH = 10  # seconds between the page's own reloads
HISTORY = 5  # history entries shown per service
MAX_TEXT = 300  # characters of one reason or message


class State(enum.StrEnum):
    RUNNING = "running"
    DEPLOYING = "deploying"
    HELD = "held"  # //down, //stop, the stop file, a failed first deploy
    FROZEN = "frozen"
    FAILED = "failed"
    REFUSED = "refused"
    STOPPED = "stopped"  # nothing runs (not deployed yet, or the containers are gone)


# Worst first: the order of the page
SEVERITY = {State.FAILED: 0, State.REFUSED: 1, State.DEPLOYING: 2, State.HELD: 3,
            State.FROZEN: 4, State.STOPPED: 5, State.RUNNING: 6}


@dataclass(frozen=True)
class Commit:
    sha: str = ""
    time: float = 0.0  # the commit's time (epoch seconds); 0: not known


@dataclass(frozen=True)
class ContainerStatus:
    name: str
    service: str  # compose service
    state: str  # the engine's: running, exited, restarting, paused, created, dead
    health: str = ""  # healthy, unhealthy, starting, or "" (no healthcheck)
    status: str = ""  # the engine's words: "Up 3 minutes (healthy)", "Exited (1) 2s ago"


@dataclass(frozen=True)
class Deploy:
    """One deploy attempt (a history entry)."""

    commit: str
    at: float  # when it ended (epoch seconds)
    outcome: str  # deployed, rolled back, failed, refused
    trigger: str = ""  # poll, webhook, start, //up, //rollback, drift...
    duration: float | None = None  # seconds, health gate included
    reason: str = ""  # one redacted line


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: State
    reason: str = ""  # why it is held, frozen, failed or refused: one redacted line
    desired: Commit = Commit()  # what upstream has
    applied: Commit = Commit()  # what runs
    applied_at: float = 0.0  # when it was brought up
    behind: int = 0  # commits upstream is ahead (frozen)
    containers: tuple[ContainerStatus, ...] = ()
    last_deploy: Deploy | None = None
    history: tuple[Deploy, ...] = ()  # newest first


@dataclass(frozen=True)
class Snapshot:
    host: str
    at: float  # when it was taken (epoch seconds)
    services: tuple[ServiceStatus, ...]
    version: str = ""


def containers_of(listing: Sequence[Container]) -> tuple[ContainerStatus, ...]:
    """A project's containers as the page shows them, from engine.containers(project)
    (`compose run` containers left out)."""
    return tuple(ContainerStatus(c.name, c.service, c.state, c.health, c.status)
                 for c in listing if not c.oneoff)


def reason_line(text: str, secrets: Sequence[str] = ()) -> str:
    """What a provider puts in a reason: `text` with `secrets` taken out, as one line."""
    return one_line(redact(text, secrets))


def one_line(text: str, limit: int = MAX_TEXT) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


# -- JSON ------------------------------------------------------------------------------

def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return one_line(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def to_dict(snapshot: Snapshot) -> dict[str, Any]:
    doc = dataclasses.asdict(snapshot)
    for svc in doc["services"]:
        svc["history"] = svc["history"][:HISTORY]
    return dict(_clean(doc))


def render_json(snapshot: Snapshot) -> bytes:
    return (json.dumps(to_dict(snapshot), indent=1, sort_keys=True) + "\n").encode()


# -- HTML ------------------------------------------------------------------------------

STYLE = """
:root{color-scheme:light dark;--bg:#f4f5f7;--card:#fff;--fg:#1d2026;--mute:#6b7280;
--line:#e3e5e8;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--info:#0969da;--idle:#6e7781}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--card:#161b22;--fg:#e6edf3;
--mute:#8b949e;--line:#30363d;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--info:#58a6ff;
--idle:#8b949e}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,
"Segoe UI",Roboto,sans-serif;-webkit-text-size-adjust:100%}
header{padding:14px 16px 6px;max-width:760px;margin:auto}
h1{font-size:19px;margin:0 0 2px}
.sub{color:var(--mute);font-size:13px}
.sum{display:flex;flex-wrap:wrap;gap:6px;margin:10px 0 0;padding:0;list-style:none}
main{max-width:760px;margin:auto;padding:6px 10px 24px}
.svc{background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:12px 14px;margin:10px 0;border-left:5px solid var(--idle)}
.svc.running{border-left-color:var(--ok)}.svc.deploying{border-left-color:var(--info)}
.svc.failed,.svc.refused{border-left-color:var(--bad)}
.svc.held,.svc.frozen{border-left-color:var(--warn)}
.top{display:flex;align-items:center;justify-content:space-between;gap:8px}
h2{font-size:17px;margin:0;overflow-wrap:anywhere}
.st{font-size:12px;font-weight:600;text-transform:uppercase;letter-spacing:.04em;
padding:2px 8px;border-radius:999px;color:#fff;background:var(--idle);white-space:nowrap}
.st.running{background:var(--ok)}.st.deploying{background:var(--info)}
.st.failed,.st.refused{background:var(--bad)}.st.held,.st.frozen{background:var(--warn)}
.why{margin:6px 0 0;font-size:14px;overflow-wrap:anywhere}
dl{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;margin:8px 0 0;font-size:14px}
dt{color:var(--mute)}dd{margin:0;overflow-wrap:anywhere}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.age{color:var(--mute)}
ul.ctr{list-style:none;margin:8px 0 0;padding:0;font-size:14px}
ul.ctr li{display:flex;gap:8px;align-items:baseline;padding:2px 0;overflow-wrap:anywhere}
.dot{width:9px;height:9px;border-radius:50%;flex:none;background:var(--idle);
display:inline-block}
.dot.ok{background:var(--ok)}.dot.warn{background:var(--warn)}.dot.bad{background:var(--bad)}
.dot.info{background:var(--info)}
details{margin-top:8px;font-size:13px}summary{color:var(--mute);cursor:pointer}
ol.hist{margin:4px 0 0;padding-left:18px}ol.hist li{margin:2px 0;overflow-wrap:anywhere}
.o-deployed{color:var(--ok)}.o-failed,.o-refused{color:var(--bad)}
.o-rolled-back{color:var(--warn)}
.chip{font-size:12px;padding:2px 8px;border-radius:999px;border:1px solid var(--line);
background:var(--card)}
.empty{color:var(--mute);text-align:center;padding:30px 0}
"""
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
# Only the page's own style: no script, no frame, no form, nothing loaded from elsewhere
CSP = (f"default-src 'none'; style-src '{STYLE_HASH}'; img-src 'none'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")


def e(text: object) -> str:
    """Escaped, one bounded line: the only way text reaches the page."""
    return html.escape(one_line(str(text)), quote=True)


def age(then: float, now: float) -> str:
    if not then:
        return ""
    s = max(0, int(now - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit} ago"
    return f"{s}s ago"


def stamp(then: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(then)) if then else ""


def _commit(c: Commit, now: float, *, at: float = 0.0) -> str:
    if not c.sha:
        return '<span class="age">none</span>'
    out = f'<code title="{e(c.sha)}">{e(c.sha[:8])}</code>'
    when = at or c.time
    if when:
        out += f' <span class="age" title="{e(stamp(when))}">{e(age(when, now))}</span>'
    return out


_TONE = {State.RUNNING: "ok", State.DEPLOYING: "info", State.HELD: "warn",
         State.FROZEN: "warn", State.FAILED: "bad", State.REFUSED: "bad", State.STOPPED: ""}


def _dot(ctr: ContainerStatus) -> str:
    if ctr.health == "unhealthy" or ctr.state in ("dead", "exited") and not \
            ctr.status.startswith("Exited (0)"):
        return "bad"
    if ctr.state != "running" or ctr.health == "starting":
        return "warn"
    return "ok"


def _containers(svc: ServiceStatus) -> str:
    if not svc.containers:
        return ""
    rows = []
    for ctr in svc.containers:
        what = ctr.state + (f", {ctr.health}" if ctr.health else "")
        title = f' title="{e(ctr.status)}"' if ctr.status else ""
        rows.append(f'<li><span class="dot {_dot(ctr)}"></span><span{title}>'
                    f"<code>{e(ctr.name)}</code> {e(what)}</span></li>")
    return '<ul class="ctr">' + "".join(rows) + "</ul>"


def _deploy_line(d: Deploy, now: float) -> str:
    cls = "o-" + "-".join(d.outcome.split())
    took = f" in {d.duration:.1f}s" if d.duration is not None else ""
    by = f" ({e(d.trigger)})" if d.trigger else ""
    why = f": {e(d.reason)}" if d.reason else ""
    return (f'<span class="{e(cls)}">{e(d.outcome)}</span> <code>{e(d.commit[:8])}</code>'
            f'{took}{by} <span class="age" title="{e(stamp(d.at))}">{e(age(d.at, now))}'
            f"</span>{why}")


def _service(svc: ServiceStatus, now: float) -> str:
    state = State(svc.state)
    parts = [f'<section class="svc {state.value}" id="svc-{e(svc.name)}">',
             f'<div class="top"><h2>{e(svc.name)}</h2>'
             f'<span class="st {state.value}">{e(state.value)}</span></div>']
    if svc.reason:
        parts.append(f'<p class="why">{e(svc.reason)}</p>')
    rows = [("running", _commit(svc.applied, now, at=svc.applied_at))]
    if svc.desired.sha and svc.desired.sha != svc.applied.sha:
        behind = f" ({svc.behind} ahead)" if svc.behind else ""
        rows.append(("upstream", _commit(svc.desired, now) + behind))
    if svc.last_deploy is not None:
        rows.append(("last deploy", _deploy_line(svc.last_deploy, now)))
    parts.append("<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>")
    parts.append(_containers(svc))
    if svc.history:
        items = "".join(f"<li>{_deploy_line(d, now)}</li>" for d in svc.history[:HISTORY])
        parts.append(f'<details><summary>history</summary><ol class="hist">{items}</ol>'
                     "</details>")
    parts.append("</section>")
    return "".join(parts)


def render_html(snapshot: Snapshot, refresh: int = REFRESH) -> str:
    now = snapshot.at
    services = sorted(snapshot.services, key=lambda s: (SEVERITY[State(s.state)], s.name))
    counts = Counter(State(s.state) for s in services)
    chips = "".join(f'<li class="chip"><span class="dot {_TONE[state]}"></span> {n} '
                    f"{e(state.value)}</li>"
                    for state, n in sorted(counts.items(), key=lambda x: SEVERITY[x[0]]))
    worst = next(iter(services), None)
    flag = "" if worst is None or State(worst.state) is State.RUNNING else "⚠ "
    body = "".join(_service(s, now) for s in services) or \
        '<p class="empty">no services tracked</p>'
    version = f" · pgod {e(snapshot.version)}" if snapshot.version else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="refresh" content="{int(refresh)}">
<meta name="robots" content="noindex">
<title>{flag}pgod · {e(snapshot.host)}</title>
<style>{STYLE}</style></head>
<body><header><h1>pgod on {e(snapshot.host)}</h1>
<div class="sub">{len(services)} service{"s" * (len(services) != 1)} · \
<span title="{e(stamp(now))}">{e(time.strftime("%H:%M:%S UTC", time.gmtime(now)))}</span>\
{version} · <a href="status.json">json</a></div>
<ul class="sum">{chips}</ul></header>
<main>{body}</main></body></html>
"""
