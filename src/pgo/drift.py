"""Drift: whether an engine event calls for a repair, the crash-loop cap, and what differs
between a project's containers and its model. Pure: values in, values out.

    belongs(project, container, services)      the container is really that project's
    decide(event, intent) -> Decision          reconcile this service now, or why not
    RepairBudget.take(service) -> Budget       at most REPAIRS_MAX repairs in REPAIR_WINDOW
    compare(hashes, model, containers)         -> [Difference]; describe() makes one line
    parse_hashes(text)                         `docker compose config --hash '*'` -> {svc: hash}

A repair is a reconcile: it brings the project back to its model with `up -d
--remove-orphans`; nothing here runs anything. What a team or an operator asked for is
never "repaired": a stop file, `//down`, `//stop`, a freeze, a service held after a failed
first deploy, and a one-shot container that finished (exit 0).
"""

from __future__ import annotations

import enum
import re
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pgo.engine import Container
from pgo.events import Action, ContainerEvent

# The crash-loop cap: at most this many repairs of one service within the window (seconds).
REPAIRS_MAX = 5
REPAIR_WINDOW = 300.0

# Events that may mean a container that should run does not (kill alone does not: a signal
# such as HUP leaves it running; its end comes as die)
ENDINGS = frozenset({Action.DIE, Action.STOP, Action.DESTROY, Action.OOM, Action.UNHEALTHY})
# Events after which a container may not be what pgod brought up (compose run by hand)
BEGINNINGS = frozenset({Action.CREATE, Action.START})


@dataclass(frozen=True)
class Intent:
    """What pgod knows about one service, as far as repairs go."""

    stop_file: bool = False  # DIR/NAME.stop exists
    held: str = ""  # "down" or "stop": held by pgoctl //down or //stop
    frozen: bool = False  # //freeze
    first_deploy_failed: bool = False  # held until a new commit or //up
    busy: bool = False  # pgod itself is changing the project now (deploy, down, restart...)
    quiet_until: float = 0.0  # epoch seconds: events until then are pgod's own last action's
    crash_loop: str = ""  # the reason, while the repair budget is spent
    oneshot: frozenset[str] = frozenset()  # compose services that run to completion
    hashes: Mapping[str, str] = field(default_factory=dict)  # compose service -> config-hash
    deployed: bool = True  # something was brought up (else there is nothing to repair)


@dataclass(frozen=True)
class Decision:
    reconcile: bool
    reason: str  # one line: what happened, or why it is left alone


def decide(event: ContainerEvent, intent: Intent) -> Decision:
    """Whether `event` (of this service's compose project) calls for a reconcile now."""
    what = event.describe()
    if event.swarm:
        return _decide_stack(event, intent, what)
    if event.oneoff:
        return Decision(False, f"{what}: a `compose run` container")
    if event.action in BEGINNINGS:
        if not intent.hashes:  # (not asked yet for this model: the pass compares)
            return _unless_intended(Decision(True, f"{what}: to be compared with the model"),
                                    event, intent)
        want = intent.hashes.get(event.service)
        if want is not None and want == event.config_hash:
            return Decision(False, f"{what}: as the model says")
        why = "not in the model" if want is None else "its configuration is not the model's"
        return _unless_intended(Decision(True, f"{what}: {why}"), event, intent)
    if event.action not in ENDINGS:
        return Decision(False, what)
    if event.action is Action.DIE and event.exit_code == 0 and event.service in intent.oneshot:
        return Decision(False, f"{what}: a one-shot container that finished")
    return _unless_intended(Decision(True, what), event, intent)


def _decide_stack(event: ContainerEvent, intent: Intent, what: str) -> Decision:
    """A swarm stack's event: swarm replaces a task that ended by itself, so a task's end
    asks for a look at the stack (its failure is told: pgo.swarm.drift), as does a swarm
    service created, changed or removed (by hand, unless pgod's own doing)."""
    if not event.container:
        return _unless_intended(Decision(True, f"{what}: to be compared with the model"),
                                event, intent)
    if event.action in (Action.DIE, Action.OOM, Action.UNHEALTHY) and not (
            event.action is Action.DIE and event.exit_code == 0):
        return _unless_intended(Decision(True, f"{what}: its task is looked at"),
                                event, intent)
    if event.action is Action.START:  # (a task replacing one that failed: swarm records
        # the failure before it makes the new task, and perhaps after the die was seen)
        return _unless_intended(Decision(True, f"{what}: the stack's tasks are looked at"),
                                event, intent)
    return Decision(False, f"{what}: swarm's (it keeps the stack's tasks running)")


def owner(name: str, services: Collection[str], separators: tuple[str, ...] = ("_",)
          ) -> str:
    """The configured service a name is of: the longest service name it starts with,
    followed by one of `separators` ("" when none). A swarm service (STACK_SERVICE) is its
    stack's; a container (belongs) its compose project's."""
    owners = [s for s in services if name.startswith(tuple(s + sep for sep in separators))]
    return max(owners, key=len, default="")


def _unless_intended(wanted: Decision, event: ContainerEvent, intent: Intent) -> Decision:
    what = wanted.reason
    if intent.stop_file:
        return Decision(False, f"{what}: held down by the stop file")
    if intent.held:
        return Decision(False, f"{what}: held by //{intent.held}")
    if intent.frozen:
        return Decision(False, f"{what}: frozen")
    if intent.first_deploy_failed:
        return Decision(False, f"{what}: the first deploy failed; held until a new commit "
                               "or //up")
    if not intent.deployed:
        return Decision(False, f"{what}: nothing deployed yet")
    if intent.busy or event.time <= intent.quiet_until:
        return Decision(False, f"{what}: pgod's own doing")
    if intent.crash_loop:
        return Decision(False, f"{what}: {intent.crash_loop}")
    return wanted


def belongs(project: str, container_name: str, services: Collection[str]) -> bool:
    """Whether a container labelled as compose project `project` is really that project's:
    its name is the project's own by the policy's naming rule (the longest pgo service name
    it starts with, followed by `-` or `_`, is `project`). Compose v1 lets a compose file
    set the `com.docker.compose.project` label of its containers: without this check a
    team could make its containers' events, and crash loops, another service's."""
    return bool(project) and owner(container_name, services, ("-", "_")) == project


# -- the crash-loop cap --------------------------------------------------------------------

class Budget(enum.Enum):
    REPAIR = "repair"  # go ahead: one repair spent
    LOOP_STARTED = "loop started"  # spent just now: mark the service failed, tell people
    LOOP = "loop"  # still spent: leave it alone


class RepairBudget:
    """At most `limit` repairs per service within `window` seconds (a sliding window).

    When a repair is wanted beyond that, the service is in a crash loop: it is left alone
    (marked failed with reason()) until the oldest repair leaves the window, or clear() is
    called (a new commit, //up)."""

    def __init__(self, limit: int = REPAIRS_MAX, window: float = REPAIR_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._spent: dict[str, list[float]] = {}
        self._looping: set[str] = set()

    def _recent(self, service: str, now: float) -> list[float]:
        recent = [t for t in self._spent.get(service, ()) if now - t < self.window]
        self._spent[service] = recent
        if len(recent) < self.limit:
            self._looping.discard(service)
        return recent

    def take(self, service: str) -> Budget:
        """Ask for one repair of `service`."""
        now = self.clock()
        recent = self._recent(service, now)
        if len(recent) < self.limit:
            recent.append(now)
            return Budget.REPAIR
        if service in self._looping:
            return Budget.LOOP
        self._looping.add(service)
        return Budget.LOOP_STARTED

    def looping(self, service: str) -> bool:
        self._recent(service, self.clock())
        return service in self._looping

    def reason(self, service: str) -> str:
        """One line while `service` is in a crash loop, else ""."""
        if not self.looping(service):
            return ""
        left = self._spent[service][0] + self.window - self.clock()
        return (f"crash loop: {self.limit} repairs within {_duration(self.window)}; left "
                f"alone until a new commit, //up, or {_duration(max(left, 1))} from now")

    def clear(self, service: str) -> None:
        self._spent.pop(service, None)
        self._looping.discard(service)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s >= 60:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    return f"{s}s"


# -- configuration drift -------------------------------------------------------------------

HASH_LINE = re.compile(r"^(\S+)\s+([0-9a-f]{64})$")


def parse_hashes(text: str) -> dict[str, str]:
    """`docker compose config --hash '*'` (v2, and v1's `docker-compose config --hash '*'`):
    one `SERVICE HASH` line per compose service; the hash is what compose puts in the
    `com.docker.compose.config-hash` label of the containers it creates for the model."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        m = HASH_LINE.match(line)
        if not m:
            raise ValueError(f"not a `SERVICE HASH` line: {line[:80]!r}")
        out[m.group(1)] = m.group(2)
    return out


def _services(model: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    services = model.get("services")
    if not isinstance(services, dict):
        return {}
    return {str(k): v for k, v in services.items() if isinstance(v, dict)}


def expected_scale(model: Mapping[str, Any]) -> dict[str, int]:
    """Containers each compose service should have: `scale`, else `deploy.replicas`, else 1."""
    out = {}
    for name, svc in _services(model).items():
        deploy = svc.get("deploy") if isinstance(svc.get("deploy"), dict) else {}
        assert isinstance(deploy, dict)
        n = svc.get("scale", deploy.get("replicas", 1))
        out[name] = int(n) if isinstance(n, int) or (isinstance(n, str) and n.isdigit()) else 1
    return out


def oneshot_services(model: Mapping[str, Any]) -> frozenset[str]:
    """Compose services that run to completion: an explicit `restart: "no"`, or what another
    service waits for with `depends_on: {X: {condition: service_completed_successfully}}`."""
    services = _services(model)
    out = {name for name, svc in services.items() if str(svc.get("restart", "")) == "no"}
    for svc in services.values():
        deps = svc.get("depends_on")
        if isinstance(deps, dict):
            out |= {str(name) for name, dep in deps.items() if isinstance(dep, dict)
                    and dep.get("condition") == "service_completed_successfully"}
    return frozenset(out & set(services))


@dataclass(frozen=True)
class Difference:
    service: str  # compose service
    kind: str  # changed, missing, extra, unknown, stopped
    detail: str  # one line

    def __str__(self) -> str:
        return f"{self.service}: {self.detail}"


def compare(hashes: Mapping[str, str], model: Mapping[str, Any],
            containers: Sequence[Container], services: Collection[str] = ()
            ) -> list[Difference]:
    """What differs between the project's containers and its model (empty: nothing).

    `hashes`: the model's config hashes (parse_hashes); `containers`: the project's, running
    or not (engine.containers). `compose run` containers are not part of the model, nor,
    given every pgo service's name in `services`, a container that does not belong()."""
    scale = expected_scale(model)
    oneshot = oneshot_services(model)
    mine = [c for c in containers if not c.oneoff
            and (not services or belongs(c.project, c.name, services))]
    out: list[Difference] = []
    count = Counter(c.service for c in mine)
    for service in sorted(count.keys() - scale.keys()):
        names = ", ".join(c.name for c in mine if c.service == service)
        out.append(Difference(service, "unknown", f"not in the model ({names})"))
    for service, want in sorted(scale.items()):
        have = count.get(service, 0)
        if have < want and service not in oneshot:  # (a finished job's container may go)
            out.append(Difference(service, "missing",
                                  f"{want - have} container{'s' * (want - have > 1)} "
                                  f"missing ({have} of {want})"))
        elif have > want:
            out.append(Difference(service, "extra", f"{have - want} container"
                                  f"{'s' * (have - want > 1)} too many ({have}, the model "
                                  f"says {want})"))
        want_hash = hashes.get(service)
        changed = [c for c in mine if c.service == service and want_hash
                   and c.config_hash != want_hash]
        if changed:
            out.append(Difference(service, "changed", "configuration is not the model's "
                                  f"({', '.join(c.name for c in changed)})"))
        stopped = [c for c in mine if c.service == service and c not in changed
                   and c.state not in ("running", "restarting")
                   and not (service in oneshot and c.state == "exited"
                            and c.status.startswith("Exited (0)"))]
        if stopped:
            out.append(Difference(service, "stopped", "not running ("
                                  + ", ".join(f"{c.name} {c.state}" for c in stopped) + ")"))
    return out


def describe(differences: Sequence[Difference]) -> str:
    """One line for the log and the notification: `web: 1 container missing (0 of 1); ...`."""
    return "; ".join(str(d) for d in differences)
