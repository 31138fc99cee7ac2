"""Settings for every test run."""

from __future__ import annotations

import shutil
import tempfile

import pytest

_OWN = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """A temporary directory of this run's own, unless --basetemp names one: pytest's
    default (/tmp/pytest-of-USER/pytest-N, the last three kept) lets a second run remove
    the repositories a first one is still using."""
    if not config.option.basetemp:
        config.option.basetemp = tempfile.mkdtemp(prefix="pgo-tests-")
        config.stash[_OWN] = config.option.basetemp


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the run's own directory when every test passed; a failed run keeps it for a
    look at the repositories and logs."""
    own = session.config.stash.get(_OWN, None)
    if own is not None and exitstatus == 0:
        shutil.rmtree(own, ignore_errors=True)
