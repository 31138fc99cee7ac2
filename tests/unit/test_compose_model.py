"""Loading a compose model for the policy (pgo.compose.Project.config): what compose prints
is read as JSON, YAML only in a child process, nothing larger than MAX_MODEL, compose itself
under a memory limit. The compose tool is faked at the runner where the shape of its output
is the point, and real where its behaviour is."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgo import compose, compose_model
from pgo.errors import ComposeError
from pgo.runner import Result, RunAs, Runner, Sink

MODEL = {"name": "svc", "services": {"app": {"image": "local/busybox:1"}},
         "x-pgo": {"down": False}}


@dataclass
class Compose:
    """Answers `compose config` as compose v2 (or v1) would; YAML read by the real child."""

    printed: str = yaml.safe_dump(MODEL)
    as_json: str | None = json.dumps(MODEL)
    calls: list[list[str]] = field(default_factory=list)
    no_child: bool = False  # this interpreter can not be started again (pgod check as a user)

    async def run(self, argv: Sequence[str], *, as_user: RunAs | None = None,
                  cwd: str | None = None, env: Mapping[str, str] | None = None,
                  stdin: bytes | None = None, timeout: float | None = None,
                  secrets: Sequence[str] = (), service: str = "") -> Result:
        argv = list(argv)
        self.calls.append(argv)
        if argv[0] == sys.executable:
            if self.no_child:
                raise PermissionError(13, "Permission denied", argv[0])
            return await Runner().run(argv, stdin=stdin, timeout=timeout)
        if "--format" in argv:
            if self.as_json is None and "--no-interpolate" not in argv:
                return Result(tuple(argv), 1, b"", b"json: error calling MarshalJSON\n")
            return Result(tuple(argv), 0, (self.as_json or json.dumps(MODEL)).encode(), b"")
        return Result(tuple(argv), 0, self.printed.encode(), b"")

    async def stream(self, argv: Sequence[str], *, stdout: Sink, stderr: Sink,
                     as_user: RunAs | None = None, cwd: str | None = None,
                     env: Mapping[str, str] | None = None, stdin: bytes | None = None,
                     secrets: Sequence[str] = (), service: str = "") -> int:
        raise AssertionError("not used")


def load(runner: Any, tmp: Path, binary: tuple[str, ...] = compose.V2) -> compose.Model:
    (tmp / "compose.yaml").write_text(yaml.safe_dump(MODEL))
    return asyncio.run(compose.Project("svc", tmp, runner, None, binary=binary).config())


def test_v2_model_is_read_as_json_and_known_by_the_yaml_text(tmp_path: Path) -> None:
    fake = Compose()
    model = load(fake, tmp_path)
    assert model.data == MODEL and model.text == fake.printed
    assert model.deploys_changes and not model.down_first
    assert not any(c[0] == sys.executable for c in fake.calls)  # no YAML read at all
    # compose v2 can not print every model as JSON: then its YAML, read by the child
    fake = Compose(as_json=None)
    assert load(fake, tmp_path).data == MODEL
    assert any(c[0] == sys.executable for c in fake.calls)


def test_v1_yaml_is_read_in_a_child_process(tmp_path: Path) -> None:
    v1 = dict(MODEL)
    del v1["x-pgo"]  # v1 drops top-level extensions: read from the file, also in the child
    fake = Compose(printed=yaml.safe_dump(v1), as_json=None)
    model = load(fake, tmp_path, compose.V1)
    assert model.data == MODEL
    assert [c[0] for c in fake.calls].count(sys.executable) == 2


def test_yaml_is_read_in_a_thread_where_no_child_can_be_started(tmp_path: Path) -> None:
    fake = Compose(as_json=None, no_child=True)
    assert load(fake, tmp_path).data == MODEL
    fake = Compose(printed="services: [\n", as_json=None, no_child=True)
    with pytest.raises(ComposeError, match="^compose config printed unreadable YAML: "):
        load(fake, tmp_path)


def test_a_model_larger_than_the_cap_is_refused_unread(tmp_path: Path) -> None:
    """A 9.5 MB compose file once held pgod's event loop for 24 s at every judgement."""
    huge = yaml.safe_dump({**MODEL, "x-big": "a" * compose_model.MAX_MODEL})
    for binary in (compose.V2, compose.V1):
        fake = Compose(printed=huge, as_json=json.dumps({**MODEL, "x-big": "a"}))
        with pytest.raises(ComposeError) as e:
            load(fake, tmp_path, binary)
        assert str(e.value) == ("the compose model is 2.0 MiB as compose prints it; pgod "
                                "judges models up to 2 MiB")
        assert not any(c[0] == sys.executable for c in fake.calls)


def test_unreadable_yaml_is_one_line(tmp_path: Path) -> None:
    fake = Compose(printed="services: [\n", as_json=None)
    with pytest.raises(ComposeError) as e:
        load(fake, tmp_path)
    assert str(e.value).startswith("compose config printed unreadable YAML: ")
    assert "\n" not in str(e.value)


def _has_v2() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "compose", "version"], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not _has_v2() or compose_model.PRLIMIT is None,
                    reason="needs `docker compose` (v2) and prlimit")
def test_compose_reading_an_endless_file_ends_within_its_memory(tmp_path: Path) -> None:
    """`env_file: /dev/zero`: compose, as the service user, would read until the machine's
    memory is gone (the policy refuses the path, but only after compose has loaded it)."""
    (tmp_path / "compose.yaml").write_text(
        "services:\n  app:\n    image: local/busybox:1\n    env_file: [/dev/zero]\n")
    project = compose.Project("svc", tmp_path, Runner(), None)
    with pytest.raises(ComposeError) as e:
        asyncio.run(project.config())
    assert "compose ran out of the 1024 MiB it may use to load the model" in str(e.value)


def test_include_and_extends_are_followed_as_compose_resolves_them() -> None:
    doc = {"include": ["a/x.yaml",
                       {"path": ["${PGO_DATA}/y.yaml", "z.yaml"], "env_file": ["e.env"],
                        "project_directory": "p"},
                       {"path": "oci://registry.example/x:1"}, {"path": "${HOME}/w.yaml"}],
           "services": {"s": {"extends": {"file": "../base.yaml", "service": "b"}},
                        "t": {"extends": "s"}}}
    assert compose_model.model_file_refs(doc, "/co", {"PGO_DATA": "/data/svc"}) == [
        ("include", "/co/a/x.yaml", "/co/a"), (".env", "/co/a/.env", None),
        ("include project_directory", "/co/p", None),
        ("include", "/data/svc/y.yaml", "/co/p"), ("include", "/co/z.yaml", "/co/p"),
        ("include env_file", "/co/e.env", None),
        ("include", "oci://registry.example/x:1", None),
        ("include", "${HOME}/w.yaml", None),
        ("extends file", "/base.yaml", "/")]
    assert compose_model.model_file_refs("not a model", "/co", {}) == []
