"""Fixtures for end-to-end tests: these need root, a running dockerd, docker compose v2
(and v1), git and OpenSSH's client. `make test` installs and starts all of them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import harness as h


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", autouse=True)
def machine() -> None:
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (pgod runs compose as other users); "
                    "run them with `make test`")
    if h.run("docker", "info", check=False).returncode != 0:
        pytest.fail("dockerd is not running; `make test` starts it")
    h.run("sh", str(h.ROOT / "tests" / "images.sh"))
    h.ensure_user()


@pytest.fixture
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A scratch directory every user can traverse (compose runs as the service user)."""
    p = h.scratch(tmp_path_factory, "e2e")
    yield p
    shutil.rmtree(p, ignore_errors=True)


@pytest.fixture
def upstream(base: Path) -> h.Upstream:
    up = h.Upstream(base)
    up.write("compose.yaml", h.WEB)
    up.commit("first")
    return up


@pytest.fixture
def projects() -> Iterator[list[str]]:
    """Names of compose projects a test creates; all are removed afterwards."""
    names: list[str] = []
    yield names
    for n in names:
        h.down_project(n)


@pytest.fixture
def pgods() -> Iterator[list[h.Pgod]]:
    started: list[h.Pgod] = []
    yield started
    for p in started:
        p.stop()


@pytest.fixture
def receiver() -> Iterator[h.Receiver]:
    r = h.Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()  # (its listening socket: else a ResourceWarning in a later test)
