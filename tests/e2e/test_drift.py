"""Configuration drift with the real compose tools and engine: what `config --hash '*'`
prints is what `up` stamps on the containers (v2 and v1), so right after `up` nothing
differs; a hand-run `up` with another file, a `--scale`, a removed container are told
apart in one line each."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import yaml

from pgo import drift, engine
from tests.e2e import harness as h

MODEL = """\
services:
  web:
    image: pgoimg/busybox:1
    command: ["httpd", "-f", "-p", "8080", "-h", "/"]
    stop_grace_period: 1s
  migrate:
    image: pgoimg/busybox:1
    command: ["true"]
  app:
    image: pgoimg/busybox:1
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    depends_on:
      migrate: {condition: service_completed_successfully}
"""


def tool(v1: bool) -> list[str]:
    return ["docker-compose"] if v1 else ["docker", "compose"]


def compose(v1: bool, name: str, file: Path, *args: str) -> str:
    return h.run(*tool(v1), "-p", name, "-f", str(file), *args).stdout


def differences(v1: bool, name: str, file: Path) -> list[drift.Difference]:
    hashes = drift.parse_hashes(compose(v1, name, file, "config", "--hash", "*"))
    model = yaml.safe_load(compose(v1, name, file, "config"))
    return drift.compare(hashes, model, asyncio.run(engine.containers(name)))


@pytest.mark.parametrize("v1", [False, True], ids=["v2", "v1"])
def test_drift_as_the_compose_tools_see_it(base, projects, v1):
    if v1 and shutil.which("docker-compose") is None:
        pytest.skip("compose v1 (docker-compose) not installed")
    name = h.unique("dr")
    projects.append(name)
    sep = "_" if v1 else "-"  # v1 names containers NAME_SERVICE_1
    file = base / "compose.yaml"
    file.write_text(MODEL)
    compose(v1, name, file, "up", "-d")
    assert differences(v1, name, file) == []

    # someone brings the project up by hand from another file
    other = base / "other.yaml"
    other.write_text(MODEL.replace('"sleep", "3600"', '"sleep", "7200"'))
    compose(v1, name, other, "up", "-d")
    assert drift.describe(differences(v1, name, file)) == \
        f"app: configuration is not the model's ({name}{sep}app{sep}1)"

    compose(v1, name, file, "up", "-d", "--remove-orphans")  # what a repair runs
    assert differences(v1, name, file) == []

    compose(v1, name, file, "up", "-d", "--scale", "web=2")
    assert drift.describe(differences(v1, name, file)) == \
        "web: 1 container too many (2, the model says 1)"
    compose(v1, name, file, "up", "-d", "--remove-orphans")
    assert differences(v1, name, file) == [], "up brings the scale back to the model's"

    h.run("docker", "rm", "-f", f"{name}{sep}web{sep}1")
    assert drift.describe(differences(v1, name, file)) == "web: 1 container missing (0 of 1)"
