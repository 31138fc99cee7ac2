"""The commands a service's key holders can run, carried out on a TrackedService.

The SSH server parses and authorizes a request (pgo.request, pgo.sshd) and hands it here;
so does pgod itself for the Caddy reload (`exec`). Each command writes to two sinks as its
output is produced and returns an exit status. Mutating commands hold the service's lock,
the one the tracker holds for a reconcile pass; read-only ones (ps, logs, exec, status,
ping, load, journal, git hash) never wait behind a deploy.

`down` and `stop` hold the service where the client left it: the tracker fetches and judges
on, but brings nothing up until `up` (or `start`/`restart` after a stop).
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Awaitable, Callable

from pgo.errors import PgoError
from pgo.request import Checked, Spec, compose_args
from pgo.runner import Sink
from pgo.service import TrackedService
from pgo.state import Hold, VerdictKind

Handler = Callable[[TrackedService, Spec, Checked, Sink, Sink], Awaitable[int]]
JOURNAL_TIMEOUT = None  # journal -f follows until the client leaves


def line(text: str) -> bytes:
    return (text.rstrip("\n") + "\n").encode("utf-8", "replace")


async def run(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink) -> int:
    """Carry out one checked command; a pgo error is one line on stderr and status 1."""
    try:
        return await HANDLERS[spec.name](svc, spec, checked, out, err)
    except PgoError as e:
        await err(line(f"{spec.name}: {e}"))
        return 1


async def _stream(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink
                  ) -> int:
    return await svc.project.stream(compose_args(spec, checked), out, err)


async def _locked(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink
                  ) -> int:
    """stop, start, restart: under the lock; a successful one sets or ends the hold."""
    async with svc.lock:
        try:
            rc = await _stream(svc, spec, checked, out, err)
        finally:
            svc.project.snapshot.invalidate()
        if rc == 0 and spec.name == "stop":
            svc.state.hold = Hold.STOP
        elif rc == 0 and spec.name in ("start", "restart") and svc.state.hold is Hold.STOP:
            svc.state.hold = None
        svc.save()
        return rc


async def _up(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink) -> int:
    stopfile = svc.paths.stopfile(svc.name)
    if stopfile.exists():
        await err(line(f"up: refused: the stop file {stopfile} holds the service down "
                       "(the machine's operator removes it)"))
        return 1
    await svc.apply()
    await out(line(f"up: commit {svc.state.applied_commit[:8]} is up"))
    return 0


async def _down(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink
                ) -> int:
    async with svc.lock:
        svc.state.hold = Hold.DOWN
        svc.save()
        try:
            rc = await svc.project.stream(["down", "--remove-orphans", *checked.flags], out, err)
        finally:
            svc.project.snapshot.invalidate()
    if rc == 0:
        await out(line("down: the service stays down until up"))
    return rc


async def _pull(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink
                ) -> int:
    async with svc.lock, svc.registries():
        return await _stream(svc, spec, checked, out, err)


async def _load(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink
                ) -> int:
    """The verdict on what upstream has: the checkout, or the commit held back from it."""
    head = await svc.checkout.head()
    desired = svc.state.desired_commit
    if desired and desired != head and not svc.cfg.is_root:
        head = desired
        verdict = await svc.judge_commit(desired)
        if verdict.kind is VerdictKind.ERROR:
            await err(line(f"refused: commit {desired[:8]}: {verdict.reasons[0]}"))
            return 1
        violations = list(verdict.reasons)
    else:
        violations = svc.violations(await svc.project.config())
    if not violations:
        note = " (a root service: the policy does not apply)" if svc.cfg.is_root else ""
        await out(line(f"accepted: commit {head[:8]}{note}"))
        return 0
    for v in violations:
        await out(line(f"{svc.name}: {v}"))
    await err(line(f"refused: commit {head[:8]} ({len(violations)} violation(s))"))
    return 1


def ago(t: float, now: float) -> str:
    if not t:
        return "never"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    return f"{stamp} ({max(0, int(now - t))}s ago)"


def status_lines(svc: TrackedService, running: bool, stopfile: bool, now: float) -> list[str]:
    st = svc.state
    rows = [
        ("service", f"{svc.name} (user {svc.cfg.user}, branch {svc.cfg.branch})"),
        ("desired", st.desired_commit[:8] or "-"),
        ("applied", f"{st.applied_commit[:8] or '-'} at {ago(st.applied_at, now)}"),
        ("reconciled", ago(st.last_reconcile, now)),
        ("running", "yes" if running else "no"),
    ]
    if stopfile:
        rows.append(("held", f"down by the stop file {svc.paths.stopfile(svc.name)}"))
    if st.hold:
        rows.append(("held", f"by pgoctl {st.hold} (until {st.hold.lifted_by()})"))
    if st.awaiting_up:
        rows.append(("waiting", f"commit {st.desired_commit[:8]} waits for a manual up "
                     "(x-pgo reload: false)"))
    if st.verdict is not None and st.verdict.refused:
        rows.append(("refused", f"commit {st.verdict.commit[:8]}"))
        rows += [("violation", v) for v in st.verdict.reasons]
    rows.append(("error", st.last_error or "-"))
    return [f"{k + ':':<11} {v}" for k, v in rows]


async def _status(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink
                  ) -> int:
    try:
        running = await svc.project.running()
    except PgoError:
        running = False
    stopfile = svc.paths.stopfile(svc.name).exists()
    await out(line("\n".join(status_lines(svc, running, stopfile, time.time()))))
    return 0


async def _ping(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink) -> int:
    await out(line(f"pong! - {socket.gethostname()}"))
    return 0


async def _journal(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink
                   ) -> int:
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        await err(line("journal: journalctl is not installed on this machine"))
        return 127
    argv = [journalctl, "--no-pager", *checked.flags, f"_UID={svc.as_user.uid}"]
    return await svc.runner.stream(argv, stdout=out, stderr=err, service=svc.name)


async def _git_pull(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink
                    ) -> int:
    outcome = await svc.reconcile("pgoctl")
    await out(line(f"{outcome}: commit {svc.state.desired_commit[:8] or '-'}"))
    if svc.state.last_error:
        await err(line(svc.state.last_error))
    return 0 if outcome.ok else 1


async def _git_hash(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink
                    ) -> int:
    await out(line((await svc.checkout.head())[:8]))
    return 0


HANDLERS: dict[str, Handler] = {
    "up": _up, "down": _down, "stop": _locked, "start": _locked, "restart": _locked,
    "pull": _pull, "ps": _stream, "logs": _stream, "exec": _stream, "load": _load,
    "status": _status, "ping": _ping, "journal": _journal, "git pull": _git_pull,
    "git hash": _git_hash,
}
