"""What pgod knows about one service, and the words of a reconcile pass.

    State      recorded on disk (.pgo/services/NAME/state.json), so it survives restarts and
               crashes: `applied_*` is what was last brought up successfully, the rest what
               the last pass saw
    Verdict    the policy's judgement on one commit (commit, model digest, kind, reasons):
               the one memory of "judged before"
    Hold       why pgoctl keeps a service from being brought up
    Outcome    what one pass came to (the `outcome` label of pgo_reconcile_total)

The file is JSON; a field is a str, int, float, bool, a StrEnum, a record (dataclass) of
these, a list of them, or None. Fields added later load from an older file with their
defaults; the names an older pgod wrote are read once (LEGACY) and written anew.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
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

    @property
    def ok(self) -> bool:
        """False for the outcomes `pgoctl //git pull` answers with a non-zero status."""
        return self not in (Outcome.FAILED, Outcome.REFUSED)


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
    ERROR = "error"  # refused: the model does not load
    SECRETS = "secrets"  # refused: a SOPS document of the commit does not decrypt
    UNJUDGED = "unjudged"  # could not be judged (git or compose did not run): try again


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
        return self.kind in (VerdictKind.POLICY, VerdictKind.ERROR, VerdictKind.SECRETS)

    def summary(self) -> str:
        return f"commit {self.commit[:8]} refused: " + "; ".join(self.reasons)


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

    @classmethod
    def load(cls, path: Path) -> State:
        """The state recorded at `path`; a fresh one when there is none or it can not be
        read (a state file is pgod's own: it is not worth more than a warning-free start)."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()
        try:
            return decode(cls, _upgrade(raw))
        except (TypeError, ValueError):
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
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(raw)
    if dataclasses.is_dataclass(hint):
        return decode(hint, raw)  # type: ignore[arg-type]
    if hint is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if not isinstance(raw, hint) or (hint is int and isinstance(raw, bool)):
        raise TypeError(f"not a {hint.__name__}: {raw!r}")
    return raw
