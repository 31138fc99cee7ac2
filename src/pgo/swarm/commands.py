"""pgoctl's commands on a swarm service: the compose words pgo.commands hands to
Project.stream (`ps --all web`, `logs --follow`, `exec -T web sh`...), carried out on the
stack with `docker stack ps`, `docker service logs`, `docker exec` in a task on this
machine, `docker service update --force` and `docker stack rm`. A flag that has no swarm
meaning is refused in one line naming it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pgo.errors import PgoError

if TYPE_CHECKING:
    from pgo.runner import Sink
    from pgo.swarm.stack import Stack

PS_FORMAT = "table {{.Name}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}"
# compose's flag -> docker's ("" : accepted, nothing to pass); absent: refused
LOGS = {"--follow": "--follow", "--timestamps": "--timestamps", "--tail": "--tail",
        "--since": "--since", "--no-color": "", "--no-log-prefix": "--raw"}
EXEC = {"--detach": "--detach", "--env": "--env", "--user": "--user",
        "--workdir": "--workdir"}


class NotForSwarm(PgoError):
    pass


def _split(args: Sequence[str]) -> tuple[list[str], list[str]]:
    flags = [a for a in args if a.startswith("-")]
    return flags, [a for a in args if not a.startswith("-")]


def _mapped(cmd: str, flags: Sequence[str], table: dict[str, str]) -> list[str]:
    out = []
    for f in flags:
        name, eq, value = f.partition("=")
        if name not in table:
            raise NotForSwarm(f"{cmd}: {name} has no meaning for a swarm service")
        if table[name]:
            out.append(f"{table[name]}={value}" if eq else table[name])
    return out


async def run(stack: Stack, args: list[str], out: Sink, err: Sink,
              stdin: bytes | None) -> int:
    cmd, rest = args[0], args[1:]
    handler: Callable[..., object] | None = {
        "ps": _ps, "logs": _logs, "exec": _exec, "restart": _restart, "down": _down,
    }.get(cmd)
    if cmd in ("stop", "start"):
        await err(f"{cmd}: not for a swarm service: swarm keeps its tasks running (down "
                  "removes the stack until up; restart replaces its tasks)\n".encode())
        return 1
    if handler is None:
        return await stack.compose_stream(args, out, err, stdin)
    try:
        return await handler(stack, rest, out, err, stdin)  # type: ignore[no-any-return,misc]
    except NotForSwarm as e:
        await err(f"{e}\n".encode())
        return 2


async def _services(stack: Stack, words: Sequence[str]) -> list[str]:
    """The swarm services the compose services `words` name (none: all of the stack's)."""
    if words:
        return [f"{stack.name}_{w}" for w in words]
    return sorted(str(s.get("Spec", {}).get("Name", "")) for s in await stack.services())


async def _ps(stack: Stack, rest: list[str], out: Sink, err: Sink, stdin: bytes | None
              ) -> int:
    flags, words = _split(rest)
    argv = ["docker", "stack", "ps", "--format", PS_FORMAT]
    for f in flags:
        if f == "--all":
            continue
        if f in ("--quiet", "--no-trunc"):
            argv.append(f)
        else:
            raise NotForSwarm(f"ps: {f.partition('=')[0]} has no meaning for a swarm service")
    if "--all" not in flags:
        argv += ["--filter", "desired-state=running"]
    for w in words:
        argv += ["--filter", f"name={stack.name}_{w}"]
    return await stack.stream_argv([*argv, stack.name], out, err)


async def _logs(stack: Stack, rest: list[str], out: Sink, err: Sink, stdin: bytes | None
                ) -> int:
    flags, words = _split(rest)
    mapped = _mapped("logs", flags, LOGS)
    names = await _services(stack, words)
    if not names:
        await err(b"logs: the stack has no service (down?)\n")
        return 1
    codes = await asyncio.gather(*(
        stack.stream_argv(["docker", "service", "logs", *mapped, "--", n], out, err)
        for n in names))
    return max(codes)


async def _exec(stack: Stack, rest: list[str], out: Sink, err: Sink, stdin: bytes | None
                ) -> int:
    rest = [a for a in rest if a != "-T"]
    i = 0
    while i < len(rest) and rest[i].startswith("-"):
        i += 1
    flags, service, command = rest[:i], rest[i], rest[i + 1:]
    mapped = _mapped("exec", flags, EXEC)
    full = f"{stack.name}_{service}"
    res = await stack.runner.run(
        ["docker", "ps", "--quiet", "--filter", f"label=com.docker.swarm.service.name={full}",
         "--filter", "status=running"], as_user=stack.as_user, env=stack.env,
        timeout=60, service=stack.name, check=True)
    ids = res.stdout.decode().split()
    if not ids:
        await err(f"exec: no task of {full} runs on this machine; exec runs in a task on "
                  "the swarm manager pgod runs on only (//ps shows where each runs)\n"
                  .encode())
        return 1
    return await stack.stream_argv(["docker", "exec", "--interactive", *mapped, ids[0],
                                    *command], out, err, stdin)


async def _restart(stack: Stack, rest: list[str], out: Sink, err: Sink, stdin: bytes | None
                   ) -> int:
    flags, words = _split(rest)
    _mapped("restart", flags, {})
    rc = 0
    for n in await _services(stack, words):
        rc = max(rc, await stack.stream_argv(
            ["docker", "service", "update", "--force", "--detach=false", "--quiet", "--", n],
            out, err))
    return rc


async def _down(stack: Stack, rest: list[str], out: Sink, err: Sink, stdin: bytes | None
                ) -> int:
    flags, _ = _split(rest)
    _mapped("down", [f for f in flags if f != "--remove-orphans"], {})
    await stack.down()
    await out(f"removed stack {stack.name}\n".encode())
    return 0
