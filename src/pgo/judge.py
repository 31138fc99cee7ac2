"""The thin I/O step before the policy: resolve real paths, then ask policy.check()."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pgo import policy


def judge(model: Mapping[str, Any], service: str, user: str, networks: tuple[str, ...],
          checkout: Path, data: Path) -> list[policy.Violation]:
    pol = policy.ServicePolicy(service=service, root=user == "root",
                               allowed=(str(checkout.resolve()), str(data.resolve())),
                               networks=networks)
    if pol.root:
        return []
    return policy.check(model, pol)
