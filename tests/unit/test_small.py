"""Durations, addresses, metric labels, redaction and the runner on real small programs."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from pgo.duration import parse_addr, parse_duration
from pgo.metrics import command_labels
from pgo.runner import Result, Runner, build_env, redact


@pytest.mark.parametrize(("text", "seconds"), [
    ("10s", 10), ("5m", 300), ("1m30s", 90), ("1h", 3600), ("250ms", 0.25), ("1.5s", 1.5),
])
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5", "m", "5x", "-5s", "5 m"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(("text", "addr"), [
    (":2222", ("", 2222)), ("127.0.0.1:22", ("127.0.0.1", 22)), ("[::1]:9112", ("::1", 9112)),
    ("localhost:1", ("localhost", 1)),
])
def test_addresses(text: str, addr: tuple[str, int]) -> None:
    assert parse_addr(text) == addr


@pytest.mark.parametrize("bad", ["2222", ":99999", "host:", "a b:1"])
def test_bad_addresses(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_addr(bad)


@pytest.mark.parametrize(("argv", "labels"), [
    (["git", "fetch", "origin"], ("git", "fetch")),
    (["docker", "compose", "--project-name", "p", "--file", "f", "up", "-d"], ("compose", "up")),
    (["docker-compose", "--project-name", "p", "ps"], ("compose", "ps")),
    (["docker", "login", "--username", "u"], ("docker", "login")),
    (["/usr/bin/prlimit", "--data=1073741824", "--", "docker", "compose", "--project-name",
      "p", "config"], ("compose", "config")),
])
def test_command_labels(argv: list[str], labels: tuple[str, str]) -> None:
    assert command_labels(argv) == labels


def test_redact_longest_first() -> None:
    assert redact("user tok token", ["tok", "token"]) == "user *** ***"
    assert redact("nothing", ["", "x y"]) == "nothing"


def test_env_is_built_from_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAKY", "1")
    env = build_env(None, {"A": "b"})
    assert "LEAKY" not in env and env["A"] == "b" and env["PATH"].startswith("/usr/local")


def test_runner_runs_and_captures() -> None:
    res = asyncio.run(Runner().run(["sh", "-c", "echo out; echo err >&2; exit 3"]))
    assert (res.returncode, res.stdout, res.stderr) == (3, b"out\n", b"err\n")


def test_runner_timeout_ends_the_process_group(tmp_path) -> None:
    pidfile = tmp_path / "pid"

    async def go() -> Result:
        return await Runner().run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"],
                                  timeout=0.5)

    t0 = time.monotonic()
    res = asyncio.run(go())  # a failed command, not an exception that ends a tracker
    assert res.returncode == -1 and res.stderr == b"timed out after 0.5s\n"
    assert time.monotonic() - t0 < 10
    child = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        for _ in range(100):  # the grandchild is gone once reaped by init
            os.kill(child, 0)
            time.sleep(0.05)


def test_runner_streams() -> None:
    got: list[bytes] = []

    async def sink(b: bytes) -> None:
        got.append(b)

    rc = asyncio.run(Runner().stream(["sh", "-c", "printf a; printf b >&2"], stdout=sink,
                                     stderr=sink))
    assert rc == 0 and b"".join(sorted(got)) == b"ab"


def test_runner_output_larger_than_a_pipe() -> None:
    res = asyncio.run(Runner().run(
        ["sh", "-c", "head -c 300000 /dev/zero; head -c 200000 /dev/zero >&2"]))
    assert (res.returncode, len(res.stdout), len(res.stderr)) == (0, 300000, 200000)
