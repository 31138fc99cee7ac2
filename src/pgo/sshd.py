"""pgod's SSH server (issue: SSH interface). Placeholder."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgo.daemon import Daemon


class _Nothing:
    async def aclose(self) -> None:
        return None


async def start(daemon: Daemon, host: str, port: int) -> _Nothing:
    return _Nothing()
