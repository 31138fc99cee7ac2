"""What pgod knows about one service, and the words of a reconcile pass.

    State      recorded on disk (.pgo/services/NAME/state.json), so it survives restarts and
               crashes: `applied_*` is what was last brought up successfully, the rest what
               the last pass saw
    Verdict    the policy's judgement on one commit (commit, model digest, kind, reasons):
               the one memory of "judged before"
    Hold       why pgoctl keeps a service from being brought up
    Outcome    what one pass came to (the `outcome` label of pgo_reconcile_total)
    Attempt    one deploy attempt, as `pgoctl //history` shows it (State.history: the last
               HISTORY, oldest first)

The file is JSON; a field is a str, int, float, bool, a StrEnum, a record (dataclass) of
these, a list of them, or None. Fields added later load from an older file with their
defaults; the names an older pgod wrote are read once (LEGACY) and written anew.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
import os
import tempfile
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class Outcome(enum.StrEnum):
    """What one reconcile pass came to. The values are metric label values: keep them."""

    DEPLOYED = "deployed"  # a changed model was brought up
    STARTED = "started"  # nothing ran: the same model was brought up again
    UNCHANGED = "unchanged"  # what runs is what upstream says
    PENDING = "pending"  # a new model waits for a manual up (x-pgo: {reload: false})
    REFUSED = "refused"  # upstream's commit was refused; what runs keeps running
    FAILED = "failed"  # something failed (a command, a judgement); tried again next pass
    STOP_FILE = "stopped"  # held down by the operator's stop file
    HELD = "held"  # held by pgoctl (State.hold)
    ROLLED_BACK = "rolled back"  # a deploy failed its health gate; the last good runs again
    FROZEN = "frozen"  # //freeze: what runs stays, upstream is fetched but not followed

    @property
    def ok(self) -> bool:
        """False for the outcomes `pgoctl //git pull` answers with a non-zero status."""
        return self not in (Outcome.FAILED, Outcome.REFUSED, Outcome.ROLLED_BACK)


class Hold(enum.StrEnum):
    """What pgoctl asked: bring nothing up until it is lifted. (The operator's stop file is
    not a hold: it is a file, looked at on every pass; State.stop_file remembers that it
    was seen, so the project is downed once.)"""

    DOWN = "down"  # //down: until //up
    STOP = "stop"  # //stop: until //start, //restart or //up

    def lifted_by(self) -> str:
        return "up" if self is Hold.DOWN else "start, restart or up"


class VerdictKind(enum.StrEnum):
    ACCEPTED = "accepted"
    POLICY = "policy"  # refused: the model breaks the policy
    ERROR = "error"  # refused: the model does not load (or its x-pgo is not valid)
    SECRETS = "secrets"  # refused: a SOPS document of the commit does not decrypt
    UNJUDGED = "unjudged"  # could not be judged (git or compose did not run): try again
    FAILED = "failed"  # brought up, it failed (its health gate, or up itself): not again


@dataclass(frozen=True)
class Verdict:
    """The judgement on one commit. `model` is the digest of the model judged, "" when it
    was judged beside the checkout (its paths are not the checkout's) or did not load."""

    commit: str
    model: str = ""
    kind: VerdictKind = VerdictKind.ACCEPTED
    reasons: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        """Not to be deployed: retried only when upstream moves (or on //up)."""
        return self.kind in (VerdictKind.POLICY, VerdictKind.ERROR, VerdictKind.SECRETS,
                             VerdictKind.FAILED)

    def summary(self) -> str:
        what = "failed" if self.kind is VerdictKind.FAILED else "refused"
        return f"commit {self.commit[:8]} {what}: " + "; ".join(self.reasons)


HISTORY = 50  # deploy attempts kept per service


@dataclass(frozen=True)
class Attempt:
    """One deploy attempt: `outcome` is deployed, rolled back, failed or refused; `reason`
    one line (why it failed or was refused, what was rolled back to; "healthy")."""

    commit: str
    at: float  # when it ended, seconds since the epoch
    trigger: str  # poll, start, webhook, pgoctl, //up, //rollback...
    outcome: Outcome
    duration: float | None = None  # seconds from its start to its end, health gate included
    reason: str = ""


@dataclass
class State:
    applied_commit: str = ""
    applied_model: str = ""  # sha256 of the normalized compose model that was brought up
    applied_at: float = 0.0
    desired_commit: str = ""  # upstream's commit, in the checkout or kept out of it
    last_reconcile: float = 0.0  # (in memory: not worth a write every pass)
    last_error: str = ""
    # the last refusal, of the desired commit (in or kept out of the checkout); None once a
    # commit is accepted. Kept on disk so that a restarted pgod neither logs nor counts a
    # refusal again while upstream stays where it was.
    verdict: Verdict | None = None
    awaiting_up: bool = False  # a new model waits for a manual up (x-pgo: {reload: false})
    stop_file: bool = False  # the stop file was seen: the project is down
    hold: Hold | None = None
    # //freeze: the checkout stays at its commit (what runs); upstream is fetched, not
    # followed, until //unfreeze. Apart from `hold`: a freeze outlasts //down and //up.
    frozen: bool = False
    last_good: str = ""  # the commit that last passed its health gate: what a rollback brings
    # the commit brought up whose health gate has not ended (pgod stopped or was interrupted
    # during it): the next pass watches it again instead of taking it as healthy
    proving: str = ""
    proving_since: float = 0.0  # when its deploy began (seconds since the epoch)
    history: list[Attempt] = dataclasses.field(default_factory=list)  # oldest first
    # engine = "swarm": the digest of each swarm service's spec as pgod last deployed the
    # stack (pgo.swarm.drift): a spec that differs was changed outside pgo
    stack_specs: dict[str, str] = dataclasses.field(default_factory=dict)

    def record(self, attempt: Attempt) -> bool:
        """Add `attempt` to the history (the last HISTORY kept); False when it only repeats
        the newest entry (the same commit, outcome and reason: a pass that fails the same
        way again before anything is touched), which is then not added."""
        if self.history:
            last = self.history[-1]
            if (last.commit, last.outcome, last.reason) == (attempt.commit, attempt.outcome,
                                                             attempt.reason):
                return False
        self.history = [*self.history[-(HISTORY - 1):], attempt]
        return True

    @classmethod
    def load(cls, path: Path, log: logging.Logger | logging.LoggerAdapter[logging.Logger]
             | None = None) -> State:
        """The state recorded at `path`; a fresh one when there is none. One that can not be
        read is moved aside (to `state.json.bad`) with a warning on `log` that says so and
        what it means: a fresh state (no freeze, no history, the next pass deploys)."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return cls()
        except OSError as e:
            _corrupt(path, e.strerror or str(e), log, move=False)
            return cls()
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise TypeError("not a JSON object")
            return decode(cls, _upgrade(raw))
        except (TypeError, ValueError) as e:
            _corrupt(path, str(e).splitlines()[0] if str(e) else type(e).__name__, log)
            return cls()

    def durable_part(self) -> dict[str, object]:
        """Everything but the time of the last pass: what must survive a crash. (A shallow
        copy with lists made tuples: asdict's deep copy costs more than a pass's own work;
        records are frozen.)"""
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(self).items()}
        del d["last_reconcile"]
        return d

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(encode(self), f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _corrupt(path: Path, why: str, log: logging.Logger | logging.LoggerAdapter[logging.Logger]
             | None, *, move: bool = True) -> None:
    bad = path.with_name(path.name + ".bad")
    if move:
        try:
            os.replace(path, bad)
        except OSError:
            move = False
    (log or logging.getLogger("pgo.state")).warning(
        "state file %s is corrupt (%s)%s; starting from a fresh state: what was applied, "
        "a freeze, a hold and the history are forgotten, and the next pass deploys upstream's "
        "commit", path, why[:200], f", moved to {bad}" if move else "")


def _upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """A state file as an older pgod wrote it, in today's names."""
    out = dict(raw)
    if "pending_reload" in out:
        out.setdefault("awaiting_up", out.pop("pending_reload"))
    if "stopped" in out:
        out.setdefault("stop_file", out.pop("stopped"))
    if "held" in out:
        out.setdefault("hold", out.pop("held") or None)
    refused = (out.pop("refused_commit", ""), out.pop("refused_model", ""),
               out.pop("violations", []))
    if refused[0] and refused[2] and "verdict" not in out:
        out["verdict"] = {"commit": refused[0], "model": refused[1],
                          "kind": VerdictKind.POLICY.value, "reasons": refused[2]}
    if "last_good" not in out and isinstance(out.get("applied_commit"), str):
        out["last_good"] = out["applied_commit"]  # (deployed before there was a gate)
    return out


# -- the file's JSON: records, enums, lists and optional values -----------------------------

def encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


T = typing.TypeVar("T")


def decode(cls: type[T], raw: Any) -> T:
    """A record of type `cls` from its JSON; unknown keys are left out, missing ones take
    their defaults. ValueError or TypeError when a value is not of its field's type."""
    if not isinstance(raw, dict):
        raise TypeError(f"{cls.__name__}: not an object")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: _value(hints[k], v) for k, v in raw.items() if k in known})


def _value(hint: Any, raw: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _value(inner, raw)
    if origin in (list, tuple):
        if not isinstance(raw, list):
            raise TypeError(f"not a list: {raw!r}")
        items = [_value(args[0], v) for v in raw]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(raw, dict):
            raise TypeError(f"not an object: {raw!r}")
        return {_value(args[0], k): _value(args[1], v) for k, v in raw.items()}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(raw)
    if dataclasses.is_dataclass(hint):
        return decode(hint, raw)  # type: ignore[arg-type]
    if hint is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if not isinstance(raw, hint) or (hint is int and isinstance(raw, bool)):
        raise TypeError(f"not a {hint.__name__}: {raw!r}")
    return raw
