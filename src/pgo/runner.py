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
import subprocess
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
# pidfd_open(2): Linux 5.3 and later; run() falls back to asyncio's subprocesses without it
PIDFD = hasattr(os, "pidfd_open")

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

    def _command(
        self, argv: Sequence[str], as_user: RunAs | None, cwd: str | None,
        secrets: Sequence[str],
    ) -> tuple[list[str], dict[str, object]]:
        """The command line to start (behind setpriv when switching users) and the extra
        Popen arguments (user=, group=... where setpriv is missing)."""
        if log.isEnabledFor(logging.DEBUG):
            who = as_user.user if as_user else "root"
            log.debug("run as %s in %s: %s", who, cwd or "/",
                      redact(shlex.join(argv), secrets))
        kwargs: dict[str, object] = {}
        if as_user is not None and os.geteuid() == 0 and not as_user.is_root:
            if SETPRIV:
                return [SETPRIV, f"--reuid={as_user.uid}", f"--regid={as_user.gid}",
                        "--groups=" + ",".join(str(g) for g in as_user.groups),
                        "--no-new-privs", "--", *argv], kwargs
            kwargs.update(user=as_user.uid, group=as_user.gid,
                          extra_groups=list(as_user.groups))
        return list(argv), kwargs

    async def _spawn(
        self, argv: Sequence[str], as_user: RunAs | None, cwd: str | None,
        env: Mapping[str, str] | None, stdin: bool, secrets: Sequence[str],
    ) -> asyncio.subprocess.Process:
        full, kwargs = self._command(argv, as_user, cwd, secrets)
        return await asyncio.create_subprocess_exec(
            *full,
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
        if stdin is None and PIDFD:
            return await self._run_pidfd(argv, as_user, cwd, env, timeout, secrets, service)
        proc = await self._spawn(argv, as_user, cwd, env, stdin is not None, secrets)
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate(stdin)
        except TimeoutError:
            # a failure like any other exit status, not an exception that could end the
            # caller's loop: the process group is ended and the caller sees returncode -1
            await terminate(proc)
            self._observe(service, argv, -1)
            return Result(tuple(argv), -1, b"", f"timed out after {timeout:g}s\n".encode())
        except BaseException:
            await terminate(proc)
            self._observe(service, argv, -1)
            raise
        rc = proc.returncode if proc.returncode is not None else -1
        self._observe(service, argv, rc)
        return Result(tuple(argv), rc, out, err)

    async def _run_pidfd(
        self, argv: Sequence[str], as_user: RunAs | None, cwd: str | None,
        env: Mapping[str, str] | None, timeout: float | None, secrets: Sequence[str],
        service: str,
    ) -> Result:
        """run() without standard input, on the event loop's own readers: the two output
        pipes and a pidfd for the exit. Same process (vfork, own process group, clean
        environment) and the same outcome as asyncio's subprocess machinery, with a
        fraction of its objects, callbacks and loop iterations per command: most of what
        pgod itself spends on a reconcile pass (bench/scale)."""
        full, kwargs = self._command(argv, as_user, cwd, secrets)
        loop = asyncio.get_running_loop()
        out_r, out_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        err_r, err_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        pidfd = -1
        watched: list[int] = []
        try:
            try:
                # pgod reads its ends without blocking; the child gets blocking ones
                os.set_blocking(out_w, True)
                os.set_blocking(err_w, True)
                proc = subprocess.Popen(  # noqa: ASYNC220 - returns once the child exec()ed
                    full, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
                    cwd=cwd or "/", env=build_env(as_user, env), process_group=0,
                    **kwargs)  # type: ignore[call-overload,unused-ignore]
            finally:
                os.close(out_w)
                os.close(err_w)
            pidfd = os.pidfd_open(proc.pid)
            chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
            open_fds = {out_r, err_r, pidfd}
            finished = loop.create_future()

            def readable(fd: int) -> None:
                if fd != pidfd:
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        return
                    if data:
                        chunks[fd].append(data)
                        return
                loop.remove_reader(fd)
                watched.remove(fd)
                open_fds.discard(fd)
                if not open_fds and not finished.done():
                    finished.set_result(None)

            for fd in (out_r, err_r, pidfd):
                loop.add_reader(fd, readable, fd)
                watched.append(fd)
            try:
                async with asyncio.timeout(timeout):
                    await finished
            except TimeoutError:
                await _end_group(proc, pidfd)
                self._observe(service, argv, -1)
                return Result(tuple(argv), -1, b"",
                              f"timed out after {timeout:g}s\n".encode())
            except BaseException:
                await _end_group(proc, pidfd)
                self._observe(service, argv, -1)
                raise
            rc = proc.wait()  # exited: the pidfd said so
        finally:
            for fd in watched:
                loop.remove_reader(fd)
            for fd in (out_r, err_r, pidfd):
                if fd >= 0:
                    os.close(fd)
        self._observe(service, argv, rc)
        return Result(tuple(argv), rc, b"".join(chunks[out_r]), b"".join(chunks[err_r]))

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


async def _end_group(proc: subprocess.Popen[bytes], pidfd: int) -> None:
    """terminate() for a process started by _run_pidfd: SIGTERM to its group, a grace
    period, SIGKILL; always reaped."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        exited: asyncio.Future[None] = loop.create_future()

        def on_exit(f: asyncio.Future[None] = exited) -> None:
            if not f.done():
                f.set_result(None)

        loop.add_reader(pidfd, on_exit)
        try:
            async with asyncio.timeout(GRACE):
                await asyncio.shield(exited)
        except TimeoutError:
            continue
        finally:
            loop.remove_reader(pidfd)
    proc.wait()


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
