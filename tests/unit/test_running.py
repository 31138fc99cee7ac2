"""RunningProjects: one listing of running compose projects, from the engine's API socket
(a small real server on a unix socket here) or from `docker ps` when that does not answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from pgo.compose import RunningProjects, engine_socket, running_from_listing
from pgo.runner import Result, RunAs

LABEL = "com.docker.compose.project"


class PsRunner:
    """Answers `docker ps` with a fixed list of projects and counts the calls."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = names
        self.calls: list[list[str]] = []

    async def run(self, argv: Sequence[str], *, as_user: RunAs | None = None,
                  cwd: str | None = None, env: Mapping[str, str] | None = None,
                  stdin: bytes | None = None, timeout: float | None = None,
                  secrets: Sequence[str] = (), service: str = "", check: bool = False,
                  what: str = "") -> Result:
        self.calls.append(list(argv))
        return Result(tuple(argv), 0, "\n".join(self.names).encode(), b"")


async def engine(path: Path, status: bytes, rows: object, requests: list[bytes]
                 ) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Type: application/json\r\n\r\n"
                     + json.dumps(rows).encode())
        await writer.drain()
        writer.close()

    return await asyncio.start_unix_server(answer, path=str(path))


def test_listing_names_the_projects_with_a_label() -> None:
    rows = [{"Labels": {LABEL: "a", "x": "y"}}, {"Labels": {"other": "b"}}, {"Labels": None},
            {"Labels": {LABEL: "c"}}]
    assert running_from_listing(json.dumps(rows).encode()) == {"a", "c"}
    with pytest.raises(ValueError):
        running_from_listing(b'{"message": "no"}')


def test_engine_answers_once_for_every_project_until_invalidated(tmp_path: Path) -> None:
    async def go() -> None:
        requests: list[bytes] = []
        server = await engine(tmp_path / "docker.sock", b"200 OK",
                              [{"Labels": {LABEL: "web"}}], requests)
        ps = PsRunner(["other"])
        running = RunningProjects(ps, max_age=60, socket=str(tmp_path / "docker.sock"))
        assert await running("web") and not await running("db")
        assert len(requests) == 1 and not ps.calls
        # only running containers, only those of compose projects: what `docker ps
        # --filter label=...` asks for
        assert requests[0].startswith(b"GET /containers/json?filters=")
        assert b"all=" not in requests[0] and LABEL.encode() in requests[0]
        running.invalidate()  # after an up or down
        assert await running("web")
        assert len(requests) == 2
        server.close()
        await server.wait_closed()

    asyncio.run(go())


@pytest.mark.parametrize("status", [b"500 Internal Server Error", b"404 Not Found"])
def test_engine_error_falls_back_to_docker_ps(tmp_path: Path, status: bytes) -> None:
    async def go() -> None:
        requests: list[bytes] = []
        server = await engine(tmp_path / "docker.sock", status, {"message": "x"}, requests)
        ps = PsRunner(["web"])
        running = RunningProjects(ps, max_age=0, socket=str(tmp_path / "docker.sock"))
        assert await running("web")
        assert ps.calls and ps.calls[0][:2] == ["docker", "ps"]
        server.close()
        await server.wait_closed()

    asyncio.run(go())


def test_no_engine_socket_falls_back_to_docker_ps(tmp_path: Path) -> None:
    ps = PsRunner(["web"])
    running = RunningProjects(ps, max_age=0, socket=str(tmp_path / "absent.sock"))
    assert asyncio.run(running("web"))
    assert asyncio.run(running("web"))
    assert len(ps.calls) == 2


def test_a_docker_context_of_roots_means_docker_ps(tmp_path: Path) -> None:
    (tmp_path / ".docker").mkdir()
    config = tmp_path / ".docker" / "config.json"
    config.write_text(json.dumps({"currentContext": "remote"}))
    assert engine_socket(str(tmp_path)) is None
    config.write_text("not json")
    assert engine_socket(str(tmp_path)) is None
    config.write_text(json.dumps({"currentContext": "default"}))
    assert engine_socket(str(tmp_path)) in (None, "/var/run/docker.sock")
