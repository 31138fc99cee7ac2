"""The in-place deploy's fallback (issue 11): which failed `up` needs a down first, and that
down goes by the project's labels, not by the model that could not come up."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pgo import compose
from pgo.runner import Result, RunAs


@dataclass
class Recorder:
    calls: list[tuple[list[str], str | None]] = field(default_factory=list)

    async def run(self, argv: Sequence[str], *, as_user: RunAs | None = None,
                  cwd: str | None = None, env: Mapping[str, str] | None = None,
                  stdin: bytes | None = None, timeout: float | None = None,
                  secrets: Sequence[str] = (), service: str = "", check: bool = False,
                  what: str = "") -> Result:
        self.calls.append((list(argv), cwd))
        return Result(tuple(argv), 0, b"", b"")


def test_the_lines_that_need_a_down_first() -> None:
    v2 = ('network p_shared was found but has incorrect label com.docker.compose.network '
          'set to "a" (expected: "b")')
    v1 = 'ERROR: Network "p_default" needs to be recreated - option "driver" has changed'
    assert compose.needs_down(f" Container p-web-1  Recreate\n{v2}\n") == v2
    assert compose.needs_down(v1) == v1
    assert compose.needs_down("Error response from daemon: pull access denied") is None
    assert compose.needs_down(f"echo {v2}") is None  # (whole lines only)


def _project(tmp_path: Path, binary: tuple[str, ...]) -> tuple[compose.Project, Recorder]:
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    runner = Recorder()
    return compose.Project("p", tmp_path, runner, None, binary=binary), runner  # type: ignore[arg-type]


def test_a_whole_down_goes_by_labels_from_a_directory_of_no_compose_file(
        tmp_path: Path) -> None:
    project, runner = _project(tmp_path, compose.V2)
    asyncio.run(project.down(whole=True))
    asyncio.run(project.down())
    (whole, cwd_whole), (plain, cwd_plain) = runner.calls
    assert whole == ["docker", "compose", "--project-name", "p", "down", "--remove-orphans"]
    assert cwd_whole == "/"
    assert plain == ["docker", "compose", "--project-name", "p", "--file",
                     str(tmp_path / "compose.yaml"), "down", "--remove-orphans"]
    assert cwd_plain == str(tmp_path)


def test_compose_v1_downs_with_the_file_it_needs(tmp_path: Path) -> None:
    project, runner = _project(tmp_path, compose.V1)
    asyncio.run(project.down(whole=True))
    (argv, cwd), = runner.calls
    assert "--file" in argv and cwd == str(tmp_path)
