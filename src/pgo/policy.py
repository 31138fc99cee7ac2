"""The compose policy (pure): (normalized compose model, service policy) -> violations.

Placeholder interface; the rules land with the policy issue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServicePolicy:
    service: str  # pgo service name (the compose project)
    root: bool  # root services bypass the policy
    allowed: tuple[str, ...]  # real host paths under which bind sources may lie
    networks: tuple[str, ...]  # external networks allowed; empty: any


@dataclass(frozen=True)
class Violation:
    compose_service: str  # "" when the problem is project-wide (top-level volumes, networks...)
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"compose service {self.compose_service}" if self.compose_service else "project"
        return f"{where}: {self.message}"


def check(model: Mapping[str, Any], policy: ServicePolicy) -> list[Violation]:
    return []
