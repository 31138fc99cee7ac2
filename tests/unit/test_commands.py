"""The command table's handlers: a command whose Spec says `lock` waits for the service's
lock (the tracker's, held while it deploys); the others run beside a deploy."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from pgo import commands
from pgo.request import Checked
from pgo.runner import Sink

# up and git pull call TrackedService.apply() and .reconcile(), which take the lock
# themselves; the service's own tests hold those. These handlers take it here.
HANDLED_HERE = ["down", "stop", "start", "restart", "pull", "ps", "logs", "exec", "ping",
                "git hash"]


class Project:
    def __init__(self) -> None:
        self.ran: list[Sequence[str]] = []
        self.snapshot = SimpleNamespace(invalidate=lambda: None)

    async def stream(self, args: Sequence[str], out: Sink, err: Sink) -> int:
        self.ran.append(args)
        return 0


class Service:
    """What the handlers above touch of a TrackedService."""

    def __init__(self) -> None:
        self.name = "web"
        self.lock = asyncio.Lock()
        self.project = Project()
        self.state = SimpleNamespace(hold=None)
        self.checkout = SimpleNamespace(head=self.head)
        self.saved = 0

    async def head(self) -> str:
        return "a" * 40

    def save(self) -> None:
        self.saved += 1

    @contextlib.asynccontextmanager
    async def registries(self) -> AsyncIterator[None]:
        yield


async def sink(data: bytes) -> None:
    pass


async def runs_while_locked(name: str) -> bool:
    spec = commands.COMMANDS[name]
    svc: Any = Service()
    words = ("web", "true") if spec.positional == "exec" else ()
    async with svc.lock:  # a deploy in progress
        task = asyncio.create_task(commands.run(svc, spec, Checked((), words), sink, sink))
        for _ in range(50):  # give it every chance to run
            await asyncio.sleep(0)
        ran = bool(svc.project.ran) or task.done()
    assert await asyncio.wait_for(task, 30) == 0
    return ran


@pytest.mark.parametrize("name", HANDLED_HERE)
def test_lock_is_what_the_table_says(name: str) -> None:
    assert asyncio.run(runs_while_locked(name)) is not commands.COMMANDS[name].lock


def test_unknown_commands_are_refused_with_the_list() -> None:
    with pytest.raises(commands.Refused) as e:
        commands.find("frob", ())
    assert e.value.status == 406 and "known: up, down, stop" in str(e.value)
    assert commands.find("git", ("pull", "x")) == (commands.COMMANDS["git pull"], ("x",))
