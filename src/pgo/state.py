"""What pgod knows about one service, recorded on disk so it survives restarts and crashes.

`applied_*` is what was last brought up successfully; the rest is what the last reconcile saw.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


@dataclass
class State:
    applied_commit: str = ""
    applied_model: str = ""  # sha256 of the normalized compose model that was brought up
    applied_at: float = 0.0
    desired_commit: str = ""
    last_reconcile: float = 0.0
    last_error: str = ""
    refused_commit: str = ""
    refused_model: str = ""
    violations: list[str] = field(default_factory=list)
    pending_reload: bool = False  # a new model waits for a manual up (x-pgo reload: false)
    stopped: bool = False  # held down by the stop file
    held: str = ""  # "down" or "stop": held by `pgoctl //down` or `//stop` until up or start

    @classmethod
    def load(cls, path: Path) -> State:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            return cls()
        known = {f.name for f in fields(cls)}
        with contextlib.suppress(TypeError):
            return cls(**{k: v for k, v in raw.items() if k in known})
        return cls()

    def durable_part(self) -> dict[str, object]:
        """Everything but the time of the last pass: what must survive a crash. (A shallow
        copy, the list made a tuple: asdict's deep copy costs more than a pass's own work.)"""
        d = dict(vars(self))
        del d["last_reconcile"]
        d["violations"] = tuple(d["violations"])
        return d

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(asdict(self), f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
