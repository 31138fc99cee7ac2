"""The runner with real small programs: check= and its redacted CommandError, the one way a
timeout is reported, standard input, and the end of a process group from stream()."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from pgo.errors import CommandError
from pgo.runner import Result, Runner

SECRET = "hunter2-token"


def test_check_raises_a_redacted_command_error() -> None:
    with pytest.raises(CommandError) as info:
        asyncio.run(Runner().run(["sh", "-c", f"echo 'error: bad token {SECRET}' >&2; exit 4"],
                                 secrets=[SECRET], check=True, what="docker login r"))
    e = info.value
    assert (e.what, e.returncode) == ("docker login r", 4)
    assert SECRET not in str(e) and SECRET not in e.output
    assert str(e) == "docker login r: exit status 4: error: bad token ***"


def test_check_names_the_command_by_default() -> None:
    with pytest.raises(CommandError, match=r"^sh: exit status 1$"):
        asyncio.run(Runner().run(["sh", "-c", "exit 1"], check=True))
    res = asyncio.run(Runner().run(["sh", "-c", "echo ok"], check=True))
    assert res.stdout == b"ok\n"


def test_a_timeout_is_a_result_or_with_check_a_command_error() -> None:
    res = asyncio.run(Runner().run(["sleep", "30"], timeout=0.2))
    assert (res.returncode, res.timed_out, res.output) == (-1, True, "timed out after 0.2s\n")
    with pytest.raises(CommandError, match=r"^git fetch: exit status -1: timed out after 0.2s$"):
        asyncio.run(Runner().run(["sleep", "30"], timeout=0.2, check=True, what="git fetch"))
    assert not asyncio.run(Runner().run(["true"], timeout=5)).timed_out


def test_standard_input_for_run_and_stream() -> None:
    data = b"x" * 200_000 + b"end"  # more than a pipe holds
    res = asyncio.run(Runner().run(["sh", "-c", "wc -c; tail -c 3"], stdin=data))
    assert res.stdout.split() == [b"200003", b"end"]

    got: list[bytes] = []

    async def sink(b: bytes) -> None:
        got.append(b)

    rc = asyncio.run(Runner().stream(["cat"], stdout=sink, stderr=sink, stdin=b"hello"))
    assert rc == 0 and b"".join(got) == b"hello"


def test_a_slow_sink_gets_everything_in_order() -> None:
    got: list[bytes] = []

    async def slow(b: bytes) -> None:
        await asyncio.sleep(0.001)
        got.append(b)

    async def nothing(b: bytes) -> None:
        pass

    rc = asyncio.run(Runner().stream(["seq", "100000"], stdout=slow, stderr=nothing))
    assert rc == 0
    assert b"".join(got) == b"".join(b"%d\n" % i for i in range(1, 100001))


@pytest.mark.parametrize("how", ["run", "stream"])
def test_cancelling_ends_the_process_group_and_leaves_no_fd(tmp_path: Path, how: str) -> None:
    """A cancelled command (a pass or a client that went away) leaves no process, not even
    the command's own children, and no file descriptor behind."""
    pidfile = tmp_path / "pid"

    async def sink(b: bytes) -> None:
        pass

    async def call(argv: list[str]) -> object:
        if how == "run":
            return await Runner().run(argv)
        return await Runner().stream(argv, stdout=sink, stderr=sink)

    async def go() -> None:
        task = asyncio.create_task(call(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"]))
        for _ in range(500):  # the child's child has started
            if pidfile.exists() and pidfile.read_text().strip():
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    fds = len(os.listdir("/proc/self/fd"))
    t0 = time.monotonic()
    asyncio.run(go())
    assert time.monotonic() - t0 < 10
    child = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        for _ in range(100):  # the grandchild is gone once reaped by init
            os.kill(child, 0)
            time.sleep(0.05)
    with pytest.raises(FileNotFoundError):
        asyncio.run(call(["/nonexistent/program"]))
    assert len(os.listdir("/proc/self/fd")) == fds


def test_without_a_pidfd_the_exit_is_still_seen() -> None:
    """Linux before 5.3 (or a seccomp filter) has no pidfd_open: the same runner, polling."""
    runner = Runner(pidfd=False)
    res: Result = asyncio.run(runner.run(["sh", "-c", "echo a; exit 2"]))
    assert (res.returncode, res.stdout) == (2, b"a\n")
    assert asyncio.run(runner.run(["sleep", "30"], timeout=0.2)).timed_out

    async def sink(b: bytes) -> None:
        pass

    assert asyncio.run(runner.stream(["sh", "-c", "exit 3"], stdout=sink, stderr=sink)) == 3
