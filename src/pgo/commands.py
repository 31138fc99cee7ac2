"""The commands a service's key holders can run: the one table of them (COMMANDS, a
pgo.request.Spec each: name, summary, handler, lock, flags, arguments) and their handlers,
carried out on a TrackedService.

The SSH server parses and authorizes a request (pgo.request, pgo.sshd), finds its Spec here
and hands it to run(); so does pgod itself for the Caddy reload (`exec`). pgoctl's help and
the man-page test read the same table. Adding a command is a handler and one Spec.

Each command writes to two sinks as its output is produced and returns an exit status.
Commands whose Spec says `lock` hold the service's lock, the one the tracker holds for a
reconcile pass (in the handler, or in the TrackedService method it calls); the others
never wait behind a deploy.

`down` and `stop` hold the service where the client left it: the tracker fetches and judges
on, but brings nothing up until `up` (or `start`/`restart` after a stop). `freeze` keeps what
runs and stops following upstream until `unfreeze`; `rollback` deploys an earlier commit of
the history and freezes there.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from typing import TYPE_CHECKING

from pgo.errors import CommandError, PgoError
from pgo.request import NOT_ACCEPTABLE, Checked, Flag, Refused, Spec, compose_args
from pgo.runner import redact
from pgo.state import Hold, Outcome, VerdictKind

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pgo.engine import Container
    from pgo.runner import Sink
    from pgo.service import TrackedService


def line(text: str) -> bytes:
    return (text.rstrip("\n") + "\n").encode("utf-8", "replace")


async def run(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink) -> int:
    """Carry out one checked command; a pgo error is one line on stderr and status 1."""
    try:
        return await spec.handler(svc, spec, checked, out, err)
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


async def _stop_file(svc: TrackedService, spec: Spec, err: Sink) -> bool:
    stopfile = svc.paths.stopfile(svc.name)
    if stopfile.exists():
        await err(line(f"{spec.name}: refused: the stop file {stopfile} holds the service "
                       "down (the machine's operator removes it)"))
        return True
    return False


async def _deployed(svc: TrackedService, spec: Spec, outcome: Outcome, out: Sink, err: Sink
                    ) -> int:
    """What a command that deployed says: the commit that runs, or why not."""
    st = svc.state
    if not outcome.ok:
        await err(line(f"{spec.name}: {outcome}: {st.last_error or '-'}"))
        return 1
    frozen = " (frozen: //unfreeze follows upstream again)" if st.frozen else ""
    await out(line(f"{spec.name}: commit {st.applied_commit[:8] or '-'} is up{frozen}"))
    verdict = st.verdict
    if verdict is not None and verdict.refused and verdict.commit != st.applied_commit:
        await err(line(f"{spec.name}: upstream's {verdict.summary()}"))
    return 0


async def _up(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink) -> int:
    if await _stop_file(svc, spec, err):
        return 1
    return await _deployed(svc, spec, await svc.apply(), out, err)


async def _freeze(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink
                  ) -> int:
    async with svc.lock:
        st = svc.state
        head = await svc.checkout.head()
        if not st.frozen:
            st.frozen = True
            svc.save()
            svc.log.info("frozen at commit %s (//freeze): upstream is fetched, not followed, "
                         "until //unfreeze", head[:8])
    await out(line(f"freeze: frozen at commit {head[:8]}; upstream is fetched, not "
                   f"followed ({await _behind(svc)}), until unfreeze"))
    return 0


async def _unfreeze(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink
                    ) -> int:
    async with svc.lock:
        was = svc.state.frozen
        svc.state.frozen = False
        svc.save()
    if was:
        svc.log.info("unfrozen (//unfreeze): following upstream again")
    outcome = await svc.reconcile("//unfreeze")
    await out(line(f"unfreeze: following upstream; {outcome}: commit "
                   f"{svc.state.desired_commit[:8] or '-'}"))
    if not outcome.ok:
        await err(line(svc.state.last_error))
        return 1
    return 0


async def _rollback(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink
                    ) -> int:
    if await _stop_file(svc, spec, err):
        return 1
    target = svc.rollback_target(checked.words[0] if checked.words else None)
    outcome = await svc.rollback(target)
    return await _deployed(svc, spec, outcome, out, err)


async def _history(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink
                   ) -> int:
    rows = history_lines(svc)
    await out(line("\n".join(rows) if rows else "history: no deploy attempt yet"))
    return 0


def history_lines(svc: TrackedService) -> list[str]:
    """Newest first: time, commit, outcome, trigger, duration, reason."""
    out = []
    for a in reversed(svc.state.history):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a.at))
        took = f"{a.duration:.1f}s" if a.duration is not None else "-"
        out.append(f"{stamp}  {a.commit[:8]}  {a.outcome:<11}  {a.trigger:<10}  {took:>7}  "
                   f"{a.reason or '-'}")
    return out


async def _behind(svc: TrackedService) -> str:
    """How far upstream is ahead of the checkout, in words."""
    try:
        n = await svc.checkout.behind()
    except (CommandError, ValueError):
        return "upstream's commit not known"
    return "upstream is at the same commit" if n == 0 else \
        f"upstream is {n} commit{'s' * (n != 1)} ahead"


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
        if verdict.kind in (VerdictKind.ERROR, VerdictKind.SECRETS):
            await err(line(f"refused: commit {desired[:8]}: {verdict.reasons[0]}"))
            return 1
        violations = list(verdict.reasons)
    elif (refused := svc.state.verdict) is not None and refused.commit == head \
            and refused.kind is VerdictKind.SECRETS:  # (the checkout holds ciphertext)
        await err(line(f"refused: commit {head[:8]}: {refused.reasons[0]}"))
        return 1
    else:
        verdict = await svc.judge_model(head, await svc.project.config())
        if verdict.kind is VerdictKind.ERROR:
            await err(line(f"refused: commit {head[:8]}: {verdict.reasons[0]}"))
            return 1
        violations = list(verdict.reasons)
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


def status_lines(svc: TrackedService, running: bool, stopfile: bool, now: float,
                 behind: str = "", containers: Sequence[Container] = (),
                 recipient: str = "") -> list[str]:
    st = svc.state
    rows = [
        ("service", f"{svc.name} (user {svc.cfg.user}, branch {svc.cfg.branch})"),
        *([("recipient", recipient)] if recipient else []),
        ("desired", st.desired_commit[:8] or "-"),
        ("applied", f"{st.applied_commit[:8] or '-'} at {ago(st.applied_at, now)}"),
        ("reconciled", ago(st.last_reconcile, now)),
        ("running", "yes" if running else "no"),
    ]
    if svc.cfg.allow:  # the operator's exceptions to the compose policy (pgo.toml `allow`)
        rows.append(("allowed", ", ".join(map(str, svc.cfg.allow))))
    if stopfile:
        rows.append(("held", f"down by the stop file {svc.paths.stopfile(svc.name)}"))
    if st.hold:
        rows.append(("held", f"by pgoctl {st.hold} (until {st.hold.lifted_by()})"))
    if st.frozen:
        rows.append(("frozen", f"at commit {st.applied_commit[:8] or '-'}"
                     + (f"; {behind}" if behind else "") + " (until unfreeze)"))
    if svc.activity:
        rows.append(("deploying", svc.activity))
    rows.append(("last good", st.last_good[:8] or "-"))
    if st.awaiting_up:
        rows.append(("waiting", f"commit {st.desired_commit[:8]} waits for a manual up "
                     "(x-pgo reload: false)"))
    if st.verdict is not None and st.verdict.kind is VerdictKind.FAILED:
        rows.append(("failed", f"commit {st.verdict.commit[:8]}: "
                     + "; ".join(st.verdict.reasons)))
    elif st.verdict is not None and st.verdict.refused:
        rows.append(("refused", f"commit {st.verdict.commit[:8]}"))
        rows += [("violation", v) for v in st.verdict.reasons]
    if st.history:
        last = st.history[-1]
        rows.append(("last deploy", f"commit {last.commit[:8]} {last.outcome} at "
                     f"{ago(last.at, now)}"))
    for c in containers:
        if not c.oneoff:
            rows.append(("container", f"{c.name} {c.state}"
                         + (f" ({c.health})" if c.health else "")
                         + (f": {c.status}" if c.status else "")))
    rows.append(("error", st.last_error or "-"))
    return [f"{k + ':':<11} {v}" for k, v in rows]


async def _status(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink
                  ) -> int:
    try:
        running = await svc.project.running()
    except PgoError:
        running = False
    try:
        containers = await svc.project.containers()
    except PgoError:
        containers = []
    stopfile = svc.paths.stopfile(svc.name).exists()
    behind = await _behind(svc) if svc.state.frozen else ""
    try:
        recipient = await _recipient_of(svc)
    except PgoError as e:
        recipient = f"- ({e})"
    text = "\n".join(status_lines(svc, running, stopfile, time.time(), behind, containers,
                                  recipient))
    await out(line(redact(text, svc.secrets)))
    return 0


async def _recipient_of(svc: TrackedService) -> str:
    """The age recipient a team encrypts its SOPS documents for (the service's own key is
    made if it has none yet); SecretError when its identities can not be had."""
    from pgo.secrets import identity  # (not at import: pgoctl reads this table)

    ids = await asyncio.to_thread(identity.for_service, svc.cfg, svc.paths.private(svc.name))
    return ids.recipient


async def _recipient(svc: TrackedService, spec: Spec, checked: Checked, out: Sink, err: Sink
                     ) -> int:
    await out(line(await _recipient_of(svc)))
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


# (long flag, its short form or "", takes a value)
LOGS_FLAGS: tuple[Flag, ...] = (
    ("--follow", "-f", False), ("--timestamps", "-t", False), ("--tail", "-n", True),
    ("--since", "", True), ("--until", "", True), ("--no-color", "", False),
    ("--no-log-prefix", "", False), ("--index", "", True))
PS_FLAGS: tuple[Flag, ...] = (
    ("--all", "-a", False), ("--quiet", "-q", False), ("--services", "", False),
    ("--format", "", True), ("--status", "", True), ("--filter", "", True),
    ("--no-trunc", "", False), ("--orphans", "", False))
TIMEOUT_FLAGS: tuple[Flag, ...] = (("--timeout", "-t", True),)
EXEC_FLAGS: tuple[Flag, ...] = (
    ("--no-TTY", "-T", False), ("--detach", "-d", False), ("--env", "-e", True),
    ("--user", "-u", True), ("--workdir", "-w", True), ("--index", "", True))
PULL_FLAGS: tuple[Flag, ...] = (
    ("--quiet", "-q", False), ("--ignore-pull-failures", "", False),
    ("--include-deps", "", False))
JOURNAL_FLAGS: tuple[Flag, ...] = (
    ("--follow", "-f", False), ("--lines", "-n", True), ("--since", "-S", True),
    ("--until", "-U", True), ("--output", "-o", True), ("--reverse", "-r", False),
    ("--priority", "-p", True), ("--grep", "-g", True), ("--quiet", "-q", False),
    ("--utc", "", False), ("--no-hostname", "", False), ("--catalog", "-x", False),
    ("--all", "-a", False), ("--output-fields", "", True))

# The command table, in the order pgoctl's help and pgoctl(1) list them.
COMMANDS: dict[str, Spec] = {s.name: s for s in (
    Spec("up", "judge the checkout and bring the project up (ends a down or stop; tries "
         "a failed commit again)", _up, lock=True),
    Spec("down", "down the project; it stays down until up", _down, lock=True,
         flags=(("--volumes", "-v", False), *TIMEOUT_FLAGS)),
    Spec("stop", "stop containers; they stay stopped until start, restart or up", _locked,
         lock=True, flags=TIMEOUT_FLAGS, positional="services"),
    Spec("start", "start stopped containers", _locked, lock=True, positional="services"),
    Spec("restart", "restart containers", _locked, lock=True, flags=TIMEOUT_FLAGS,
         positional="services"),
    Spec("pull", "pull the images (logged in to the service's registries)", _pull,
         lock=True, flags=PULL_FLAGS, positional="services"),
    Spec("ps", "list the project's containers", _stream, flags=PS_FLAGS,
         positional="services"),
    Spec("logs", "show (-f: follow) the containers' output", _stream, flags=LOGS_FLAGS,
         positional="services"),
    Spec("exec", "run a command in a running container (no TTY)", _stream,
         flags=EXEC_FLAGS, positional="exec"),
    Spec("load", "judge the current checkout by the compose policy", _load),
    Spec("status", "what pgod knows: commits, holds, freeze, failures, containers", _status),
    Spec("history", "the last deploy attempts, newest first", _history),
    Spec("freeze", "keep what runs; fetch upstream but do not follow it", _freeze, lock=True),
    Spec("unfreeze", "follow upstream again (and reconcile now)", _unfreeze, lock=True),
    Spec("rollback", "deploy an earlier commit of the history (default: the last good one "
         "before what runs) and freeze there", _rollback, lock=True, positional="commit"),
    Spec("recipient", "the age recipient to encrypt the repository's SOPS files for",
         _recipient),
    Spec("ping", "check that the key works", _ping),
    Spec("journal", "the service user's lines in the system journal", _journal,
         flags=JOURNAL_FLAGS),
    Spec("git pull", "fetch upstream and reconcile now", _git_pull, lock=True),
    Spec("git hash", "the checkout's commit (8 hex digits)", _git_hash),
)}


def find(command: str, args: tuple[str, ...]) -> tuple[Spec, tuple[str, ...]]:
    """The Spec a request's command word names, and the arguments left for it: a command
    of two words (`git pull`) takes the first argument. Refused(406) for no command."""
    if args and f"{command} {args[0]}" in COMMANDS:
        return COMMANDS[f"{command} {args[0]}"], args[1:]
    spec = COMMANDS.get(command)
    if spec is None:
        known = ", ".join(COMMANDS)
        raise Refused(NOT_ACCEPTABLE,
                      f"Not Acceptable: unknown command {command!r} (known: {known})")
    return spec, args
