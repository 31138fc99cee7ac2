"""The single way pgo runs an external program.

Every git, compose and docker invocation goes through Runner: as a given unix user (uid, gid,
that user's groups plus the local `docker` group), with an environment built here from
nothing, in a directory passed as `cwd` (never os.chdir), in its own process group.

    run(argv, ...) -> Result     the whole output, collected; `check=True` raises instead
                                 of returning a failure
    stream(argv, ...) -> int     the output handed to two sinks as it comes; the exit status

Both start the process the same way (_Child.start: `Popen` after a vfork, behind `setpriv`
when switching users) and end it the same way (_Child.end_group: SIGTERM to its process
group, a grace period, SIGKILL, always reaped), on a timeout or when the caller is
cancelled.

Failures. A program that can not be started raises OSError (FileNotFoundError...). Anything
else is a Result: a non-zero exit status, or a timeout, which is reported as returncode -1
with `timed_out` set and "timed out after Ns" as its output: run() never raises
TimeoutError, so a hung command can not end a caller's loop. With `check=True`, run() raises
CommandError for both instead (Result.check), its output redacted with the given secrets:
that is how a caller that can not go on without the command asks for it.

Command lines are logged at debug level with every secret replaced by `***`. Unit tests
replace Runner with a recording fake of the same shape (tests/unit/fakes.py).
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
from typing import IO, Protocol

from pgo.errors import CommandError

log = logging.getLogger("pgo.runner")

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# util-linux's setpriv changes uid, gid and groups after a vfork()ed exec; passing user=
# to subprocess instead forces a full fork() of pgod, which costs more than the git fetch
# it runs (measured: bench/scale). Capabilities go with the uid change; no_new_privs keeps
# setuid programs from giving them back.
SETPRIV = shutil.which("setpriv", path=PATH)
GRACE = 5.0
# pidfd_open(2): Linux 5.3 and later. Without it a process's exit is polled this often.
PIDFD = hasattr(os, "pidfd_open")
EXIT_POLL = 0.02

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


def command_labels(argv: Sequence[str]) -> tuple[str, str]:
    """(cmd, subcmd) of a command line: `git fetch` -> (git, fetch),
    `docker compose up` -> (compose, up). A resource-limit wrapper (`prlimit ... -- CMD`)
    is looked through: the command is what it runs."""
    if argv and os.path.basename(argv[0]) == "prlimit" and "--" in argv:
        argv = argv[list(argv).index("--") + 1:]
    words = [os.path.basename(argv[0])] if argv else [""]
    rest = list(argv[1:])
    if words[0] == "docker" and rest[:1] == ["compose"]:
        words, rest = ["compose"], rest[1:]
    elif words[0] == "docker-compose":
        words = ["compose"]
    # skip global options (and their values) to reach the subcommand
    with_value = {"-c", "--project-name", "-p", "--file", "-f", "--env-file", "--project-directory"}
    i = 0
    while i < len(rest) and rest[i].startswith("-"):
        i += 2 if rest[i] in with_value else 1
    sub = rest[i] if i < len(rest) else ""
    return words[0], sub


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int  # -1: timed out (or ended because the caller was cancelled)
    stdout: bytes
    stderr: bytes
    timed_out: bool = False

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).decode("utf-8", "replace")

    def check(self, what: str = "", secrets: Sequence[str] = ()) -> Result:
        """This result when the command succeeded; else CommandError naming `what` (by
        default the command, as `git fetch`), the exit status and the output, every
        secret in it replaced by `***`."""
        if self.returncode == 0 and not self.timed_out:
            return self
        raise CommandError(what or " ".join(w for w in command_labels(self.argv) if w),
                           self.returncode, redact(self.output, secrets))


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
        check: bool = False, what: str = "",
    ) -> Result: ...

    async def stream(
        self, argv: Sequence[str], *, stdout: Sink, stderr: Sink,
        as_user: RunAs | None = None, cwd: str | None = None,
        env: Mapping[str, str] | None = None, stdin: bytes | None = None,
        secrets: Sequence[str] = (), service: str = "",
    ) -> int: ...


def _command(argv: Sequence[str], as_user: RunAs | None, cwd: str | None,
             secrets: Sequence[str]) -> tuple[list[str], dict[str, object]]:
    """The command line to start (behind setpriv when switching users) and the extra
    Popen arguments (user=, group=... where setpriv is missing)."""
    if log.isEnabledFor(logging.DEBUG):
        who = as_user.user if as_user else "root"
        log.debug("run as %s in %s: %s", who, cwd or "/", redact(shlex.join(argv), secrets))
    kwargs: dict[str, object] = {}
    if as_user is not None and os.geteuid() == 0 and not as_user.is_root:
        if SETPRIV:
            return [SETPRIV, f"--reuid={as_user.uid}", f"--regid={as_user.gid}",
                    "--groups=" + ",".join(str(g) for g in as_user.groups),
                    "--no-new-privs", "--", *argv], kwargs
        kwargs.update(user=as_user.uid, group=as_user.gid, extra_groups=list(as_user.groups))
    return list(argv), kwargs


def _input(data: bytes) -> int:
    """A file descriptor to read `data` from as standard input: an anonymous memory file
    (never on disk), so nothing has to be written to a pipe while the program runs."""
    fd = os.memfd_create("pgo-stdin", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Child:
    """One started program in a process group of its own, and how pgod learns that it
    exited: a pidfd the event loop watches (Linux 5.3+), else polling."""

    def __init__(self, proc: subprocess.Popen[bytes], *, pidfd: bool = PIDFD) -> None:
        self.proc = proc
        self.pidfd = -1
        if pidfd:
            with contextlib.suppress(OSError):  # (ENOSYS under some seccomp filters)
                self.pidfd = os.pidfd_open(proc.pid)

    @classmethod
    def start(cls, argv: Sequence[str], *, as_user: RunAs | None, cwd: str | None,
              env: Mapping[str, str] | None, secrets: Sequence[str], stdin: bytes | None,
              stdout: int, stderr: int, pidfd: bool = PIDFD) -> _Child:
        """Start argv with the given output descriptors (closed here once the child has
        them). Returns once the child exec()ed; an OSError when it could not."""
        full, kwargs = _command(argv, as_user, cwd, secrets)
        in_fd = subprocess.DEVNULL
        try:
            if stdin is not None:
                in_fd = _input(stdin)
            proc = subprocess.Popen(  # noqa: ASYNC220 - returns once the child exec()ed
                full, stdin=in_fd, stdout=stdout, stderr=stderr, cwd=cwd or "/",
                env=build_env(as_user, env), process_group=0,
                **kwargs)  # type: ignore[call-overload,unused-ignore]
        finally:
            for fd in (stdout, stderr, in_fd):
                if fd >= 0:
                    os.close(fd)
        return cls(proc, pidfd=pidfd)

    async def exited(self) -> int:
        """Wait for the program's exit; its status (it is reaped)."""
        if self.proc.poll() is None:
            if self.pidfd >= 0:
                loop = asyncio.get_running_loop()
                done: asyncio.Future[None] = loop.create_future()

                def on_exit() -> None:
                    if not done.done():
                        done.set_result(None)

                loop.add_reader(self.pidfd, on_exit)
                try:
                    await done
                finally:
                    loop.remove_reader(self.pidfd)
            else:
                # without a pidfd there is nothing to wait on but the exit status itself
                while self.proc.poll() is None:  # noqa: ASYNC110 - see above
                    await asyncio.sleep(EXIT_POLL)
        return self.proc.wait()  # exited: returns at once

    async def end_group(self) -> None:
        """End the program's whole process group: SIGTERM, a grace period, then SIGKILL;
        always reaped."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                async with asyncio.timeout(GRACE):
                    await self.exited()
                return
            except TimeoutError:
                continue
        self.proc.wait()

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


class Runner:
    def __init__(self, observer: Observer | None = None, *, pidfd: bool = PIDFD) -> None:
        self.observer = observer
        self.pidfd = pidfd  # watch exits through pidfds (False: poll, as without them)

    def _observe(self, service: str, argv: Sequence[str], rc: int) -> None:
        if self.observer is not None:
            self.observer(service, argv, rc)

    async def run(
        self, argv: Sequence[str], *, as_user: RunAs | None = None, cwd: str | None = None,
        env: Mapping[str, str] | None = None, stdin: bytes | None = None,
        timeout: float | None = None, secrets: Sequence[str] = (), service: str = "",
        check: bool = False, what: str = "",
    ) -> Result:
        """Run argv to its end and collect its output (see the module's docstring for
        failures). The output pipes and the exit are watched by the event loop's own
        readers, with a fraction of the objects, callbacks and loop iterations of asyncio's
        subprocess machinery per command: most of what pgod itself spends on a reconcile
        pass (bench/scale)."""
        loop = asyncio.get_running_loop()
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        watched: list[int] = []
        child: _Child | None = None
        try:
            os.set_blocking(out_r, False)  # pgod reads its ends without blocking
            os.set_blocking(err_r, False)
            ends, out_w, err_w = (out_w, err_w), -1, -1  # start() closes them, come what may
            child = _Child.start(argv, as_user=as_user, cwd=cwd, env=env, secrets=secrets,
                                 stdin=stdin, stdout=ends[0], stderr=ends[1],
                                 pidfd=self.pidfd)
            chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
            pidfd = child.pidfd
            open_fds = {out_r, err_r} | ({pidfd} if pidfd >= 0 else set())
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

            for fd in list(open_fds):
                loop.add_reader(fd, readable, fd)
                watched.append(fd)
            try:
                async with asyncio.timeout(timeout):
                    await finished
                    rc = await child.exited()  # (at once when the pidfd said so)
            except TimeoutError:
                await child.end_group()
                self._observe(service, argv, -1)
                res = Result(tuple(argv), -1, b"", f"timed out after {timeout:g}s\n".encode(),
                             timed_out=True)
                return res.check(what, secrets) if check else res
            except BaseException:
                await child.end_group()
                self._observe(service, argv, -1)
                raise
        finally:
            for fd in watched:
                loop.remove_reader(fd)
            for fd in (out_r, err_r, out_w, err_w):
                if fd >= 0:
                    os.close(fd)
            if child is not None:
                child.close()
        self._observe(service, argv, rc)
        res = Result(tuple(argv), rc, b"".join(chunks[out_r]), b"".join(chunks[err_r]))
        return res.check(what, secrets) if check else res

    async def stream(
        self, argv: Sequence[str], *, stdout: Sink, stderr: Sink,
        as_user: RunAs | None = None, cwd: str | None = None,
        env: Mapping[str, str] | None = None, stdin: bytes | None = None,
        secrets: Sequence[str] = (), service: str = "",
    ) -> int:
        """Run argv, handing its output to the sinks as it comes (a slow sink slows the
        program down, it does not pile output up in pgod); its exit status. Cancelling
        ends the process group."""
        loop = asyncio.get_running_loop()
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            child = _Child.start(argv, as_user=as_user, cwd=cwd, env=env, secrets=secrets,
                                 stdin=stdin, stdout=out_w, stderr=err_w, pidfd=self.pidfd)
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        pipes: list[IO[bytes]] = [os.fdopen(out_r, "rb", buffering=0),
                                  os.fdopen(err_r, "rb", buffering=0)]
        transports: list[asyncio.BaseTransport] = []

        async def pump(pipe: IO[bytes], sink: Sink) -> None:
            reader = asyncio.StreamReader(loop=loop)
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
            transports.append(transport)
            while chunk := await reader.read(65536):
                await sink(chunk)

        try:
            await asyncio.gather(pump(pipes[0], stdout), pump(pipes[1], stderr))
            rc = await child.exited()
        except BaseException:
            await child.end_group()
            self._observe(service, argv, -1)
            raise
        finally:
            for transport in transports:
                transport.close()
            for pipe in pipes:
                pipe.close()  # (idempotent: a transport may have closed it)
            child.close()
        self._observe(service, argv, rc)
        return rc
