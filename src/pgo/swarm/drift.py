"""A stack's drift and its tasks' failures (issue 15, item 6). Pure: the engine's documents
in, values out.

    spec_digests(services)                       {swarm service: digest of its spec}
    compare(stack, expected, services, baseline) -> [pgo.drift.Difference]
    failures(services, tasks)                    the failed or rejected tasks listed
    TaskFailures.observe(found, since)           the new ones; whether a crash loop began

Swarm keeps a stack's tasks running by itself (a task that ends is replaced, as its
`restart_policy` says), so pgod does not fight its scheduler over tasks. What swarm does not
put back is the stack itself: a swarm service removed by hand (`docker service rm`), one
the model does not have (made by hand with the stack's label), or one whose spec was
changed by hand (`docker service update`, `docker service scale`). Those are drift, and a
repair deploys the model again (`docker stack deploy --prune`).

A spec is compared with its digest as pgod last deployed it (State.stack_specs).
`TaskTemplate.ForceUpdate` is left out of the digest: a forced update (//restart, or
`docker service update --force` by hand) restarts the tasks and changes nothing of what
they run, and `docker stack deploy` keeps the counter as it finds it.

Task failures are told, not repaired: each failed or rejected task is logged once, the
first of a quiet spell is told (Kind.TASK_FAILED), and REPAIRS_MAX of them within
REPAIR_WINDOW make a crash loop, told once and shown on the status page until the window
has passed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pgo.drift import REPAIR_WINDOW, REPAIRS_MAX, Difference, _duration
from pgo.logtext import untrusted

FAILED = ("failed", "rejected")


def dig(doc: Any, *keys: str) -> Any:
    """doc[k1][k2]... of an engine document; None where a level is missing."""
    for k in keys:
        doc = doc.get(k) if isinstance(doc, Mapping) else None
    return doc


def spec_digest(service: Mapping[str, Any]) -> str:
    """The sha256 of a swarm service's spec, its ForceUpdate counter left out."""
    found = service.get("Spec")
    spec: dict[str, Any] = copy.deepcopy(found) if isinstance(found, dict) else {}
    template = spec.get("TaskTemplate")
    if isinstance(template, dict):
        template.pop("ForceUpdate", None)
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def spec_digests(services: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    return {str(dig(s, "Spec", "Name")): spec_digest(s) for s in services}


def compare(stack: str, expected: Collection[str], services: Sequence[Mapping[str, Any]],
            baseline: Mapping[str, str]) -> list[Difference]:
    """What differs between the stack's swarm services and the model's compose services
    `expected` (empty: nothing). `baseline`: the spec digests as pgod last deployed them
    (empty: not known, so specs are not compared)."""
    by_name = {str(dig(s, "Spec", "Name")): s for s in services}
    out: list[Difference] = []
    for name in sorted(expected):
        full = f"{stack}_{name}"
        svc = by_name.get(full)
        if svc is None:
            out.append(Difference(name, "missing", f"swarm service {full} is gone"))
        elif full in baseline and baseline[full] != spec_digest(svc):
            out.append(Difference(name, "changed", f"the spec of swarm service {full} was "
                                  "changed outside pgo (docker service update or scale?)"))
    fulls = {f"{stack}_{name}" for name in expected}
    for full in sorted(by_name.keys() - fulls):
        out.append(Difference(full.removeprefix(stack + "_"), "unknown",
                              untrusted(f"swarm service {full} is not in the model", 200)))
    return out


@dataclass(frozen=True)
class TaskFailure:
    task: str  # the task's id
    name: str  # STACK_SERVICE.SLOT (or .NODE for a global service)
    node: str  # the node's id
    at: float  # when it failed, seconds since the epoch
    why: str  # `failed: task: non-zero exit (3) (exit code 3)`, as the engine says it

    def describe(self) -> str:
        return untrusted(f"task {self.name} {self.why}" + (
            f" on node {self.node[:12]}" if self.node else ""), 240)


def failures(services: Sequence[Mapping[str, Any]], tasks: Sequence[Mapping[str, Any]]
             ) -> list[TaskFailure]:
    """The failed or rejected tasks of `services` among `tasks` (swarm keeps a few ended
    tasks of each slot), oldest first (a stack's health gate, pgo.swarm.converge, fails on
    one since its deploy began)."""
    from pgo.health import _epoch as epoch  # (the engine's timestamps, read once)

    names = {s.get("ID"): str(dig(s, "Spec", "Name")) for s in services}
    out = []
    for t in tasks:
        state = dig(t, "Status", "State")
        if state not in FAILED or t.get("ServiceID") not in names:
            continue
        err = str(dig(t, "Status", "Err") or "")
        code = dig(t, "Status", "ContainerStatus", "ExitCode")
        why = f"{state}" + (f": {err}" if err else "") + (
            f" (exit code {code})" if isinstance(code, int) and code else "")
        node = str(t.get("NodeID") or "")
        out.append(TaskFailure(str(t.get("ID") or ""),
                               f"{names[t.get('ServiceID')]}.{t.get('Slot') or node[:12]}",
                               node, epoch(dig(t, "Status", "Timestamp")), why))
    return sorted(out, key=lambda f: f.at)


class TaskFailures:
    """The task failures of one stack seen so far (see the module)."""

    def __init__(self, limit: int = REPAIRS_MAX, window: float = REPAIR_WINDOW,
                 clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.seen: set[str] = set()
        self.recent: list[TaskFailure] = []  # within the window, oldest first
        self.looping = False

    def _trim(self) -> None:
        now = self.clock()
        self.recent = [f for f in self.recent if now - f.at < self.window]
        if len(self.recent) < self.limit:
            self.looping = False

    def observe(self, found: Sequence[TaskFailure], since: float
                ) -> tuple[list[TaskFailure], bool]:
        """The failures in `found` not seen before that happened after `since` (those
        before were pgod's own deploy's, which its health gate judged, or happened before
        this pgod looked), and whether they began a crash loop."""
        new = [f for f in found if f.task not in self.seen and f.at > since]
        self.seen = {f.task for f in found}  # (swarm forgets old tasks: so does this)
        self.recent.extend(new)
        self._trim()
        started = not self.looping and len(self.recent) >= self.limit
        self.looping = self.looping or started
        return new, started

    def first_of_spell(self, new: Sequence[TaskFailure]) -> bool:
        """Whether `new` holds the first failure within the window (told; the rest only
        logged until a crash loop)."""
        return bool(new) and len(self.recent) == len(new)

    def reason(self) -> str:
        """One line while the tasks are in a crash loop, else ""."""
        self._trim()
        if not self.looping:
            return ""
        return (f"crash loop: {len(self.recent)} task failures within "
                f"{_duration(self.window)} (last: {self.recent[-1].describe()}); swarm "
                "keeps replacing them as its restart_policy says")

    def last(self) -> TaskFailure | None:
        self._trim()
        return self.recent[-1] if self.recent else None
