"""The single way pgo runs an external program.

Every git and compose invocation goes through Runner: as a given unix user (uid, gid, that
user's groups plus the local `docker` group), with an environment built here from nothing,
in a directory passed as `cwd` (never os.chdir), in its own process group so that a
cancellation or timeout can end the whole tree (SIGTERM, a grace period, SIGKILL, always
reaped). Command lines are logged at debug level with every secret replaced by `***`.

Unit tests replace Runner with a recording fake of the same shape (see tests/unit/fakes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import pwd
import shlex
import shutil
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("pgo.runner")

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# util-linux's setpriv changes uid, gid and groups after a vfork()ed exec; passing user=
# to subprocess instead forces a full fork() of pgod, which costs more than the git fetch
# it runs (measured: bench/scale). Capabilities go with the uid change; no_new_privs keeps
# setuid programs from giving them back.
SETPRIV = shutil.which("setpriv", path=PATH)
GRACE = 5.0

Sink = Callable[[bytes], Awaitable[None]]
Observer = Callable[[str, Sequence[str], int], None]


@dataclass(frozen=True)
class RunAs:
    """A unix identity to run a program as."""

    user: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    @classmethod
    def lookup(cls, user: str, *, home: str | None = None) -> RunAs:
        pw = pwd.getpwnam(user)
        groups = set(os.getgrouplist(pw.pw_name, pw.pw_gid))
        with contextlib.suppress(KeyError):
            groups.add(grp.getgrnam("docker").gr_gid)
        if home is None:
            home = pw.pw_dir if os.path.isdir(pw.pw_dir) else "/"
        return cls(user=pw.pw_name, uid=pw.pw_uid, gid=pw.pw_gid,
                   groups=tuple(sorted(groups)), home=home)


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).decode("utf-8", "replace")


def redact(text: str, secrets: Sequence[str]) -> str:
    for s in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(s, "***")
    return text


def build_env(as_user: RunAs | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {"PATH": PATH, "LANG": "C.UTF-8"}
    if as_user is not None:
        env.update(HOME=as_user.home, USER=as_user.user, LOGNAME=as_user.user)
    else:
        env.update(HOME="/root", USER="root", LOGNAME="root")
    if extra:
        env.update(extra)
    return env


class CommandRunner(Protocol):
    async def run(
        self, argv: Sequence[str], *, as_user: RunAs | None = None, cwd: str | None = None,
        env: Mapping[str, str] | None = None, stdin: bytes | None = None,
        timeout: float | None = None, secrets: Sequence[str] = (), service: str = "",
    ) -> Result: ...

    async def stream(
        self, argv: Sequence[str], *, stdout: Sink, stderr: Sink,
        as_user: RunAs | None = None, cwd: str | None = None,
        env: Mapping[str, str] | None = None, stdin: bytes | None = None,
        secrets: Sequence[str] = (), service: str = "",
    ) -> int: ...


class Runner:
    def __init__(self, observer: Observer | None = None) -> None:
        self.observer = observer

    async def _spawn(
        self, argv: Sequence[str], as_user: RunAs | None, cwd: str | None,
        env: Mapping[str, str] | None, stdin: bool, secrets: Sequence[str],
    ) -> asyncio.subprocess.Process:
        if log.isEnabledFor(logging.DEBUG):
            who = as_user.user if as_user else "root"
            log.debug("run as %s in %s: %s", who, cwd or "/",
                      redact(shlex.join(argv), secrets))
        kwargs: dict[str, object] = {}
        if as_user is not None and os.geteuid() == 0 and not as_user.is_root:
            if SETPRIV:
                argv = [SETPRIV, f"--reuid={as_user.uid}", f"--regid={as_user.gid}",
                        "--groups=" + ",".join(str(g) for g in as_user.groups),
                        "--no-new-privs", "--", *argv]
            else:
                kwargs.update(user=as_user.uid, group=as_user.gid,
                              extra_groups=list(as_user.groups))
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd or "/",
            env=build_env(as_user, env),
            process_group=0,
            **kwargs,  # type: ignore[arg-type]
        )

    def _observe(self, service: str, argv: Sequence[str], rc: int) -> None:
        if self.observer is not None:
            self.observer(service, argv, rc)

    async def run(
        self, argv: Sequence[str], *, as_user: RunAs | None = None, cwd: str | None = None,
        env: Mapping[str, str] | None = None, stdin: bytes | None = None,
        timeout: float | None = None, secrets: Sequence[str] = (), service: str = "",
    ) -> Result:
        proc = await self._spawn(argv, as_user, cwd, env, stdin is not None, secrets)
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate(stdin)
        except BaseException:
            await terminate(proc)
            self._observe(service, argv, -1)
            raise
        rc = proc.returncode if proc.returncode is not None else -1
        self._observe(service, argv, rc)
        return Result(tuple(argv), rc, out, err)

    async def stream(
        self, argv: Sequence[str], *, stdout: Sink, stderr: Sink,
        as_user: RunAs | None = None, cwd: str | None = None,
        env: Mapping[str, str] | None = None, stdin: bytes | None = None,
        secrets: Sequence[str] = (), service: str = "",
    ) -> int:
        """Run argv, handing its output to the sinks as it comes. Cancelling ends the
        process group."""
        proc = await self._spawn(argv, as_user, cwd, env, stdin is not None, secrets)

        async def pump(reader: asyncio.StreamReader | None, sink: Sink) -> None:
            if reader is None:
                return
            while chunk := await reader.read(65536):
                await sink(chunk)

        try:
            if stdin is not None and proc.stdin is not None:
                proc.stdin.write(stdin)
                await proc.stdin.drain()
                proc.stdin.close()
            await asyncio.gather(pump(proc.stdout, stdout), pump(proc.stderr, stderr))
            rc = await proc.wait()
        except BaseException:
            await terminate(proc)
            self._observe(service, argv, -1)
            raise
        self._observe(service, argv, rc)
        return rc


async def terminate(proc: asyncio.subprocess.Process) -> None:
    """End proc's whole process group: SIGTERM, a grace period, then SIGKILL; always reap."""
    if proc.returncode is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            async with asyncio.timeout(GRACE):
                await asyncio.shield(proc.wait())
            return
        except TimeoutError:
            continue
