"""The recorded state: a file that can not be read is never silently replaced (issue 14,
item 8), and the deploy history keeps its bound."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pgo.state import HISTORY, Attempt, Outcome, State


def test_a_corrupt_state_file_is_moved_aside_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"applied_commit": "abc", "frozen": tr')  # cut short mid-write
    with caplog.at_level(logging.WARNING):
        st = State.load(path)
    assert st == State()
    assert not path.exists() and (tmp_path / "state.json.bad").read_text().startswith("{")
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert f"state file {path} is corrupt" in warning.message
    assert f"moved to {path}.bad" in warning.message
    assert "a freeze, a hold and the history are forgotten" in warning.message


def test_a_state_file_of_the_wrong_types_is_corrupt_too(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"frozen": "yes", "history": [{"commit": 1}]}))
    with caplog.at_level(logging.WARNING):
        assert State.load(path) == State()
    assert any("is corrupt (not a bool: 'yes')" in r.message for r in caplog.records)


def test_no_file_is_a_fresh_state_without_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert State.load(tmp_path / "state.json") == State()
    assert not caplog.records


def test_the_history_survives_a_save_and_keeps_the_last_ones(tmp_path: Path) -> None:
    st = State(frozen=True, last_good="c1")
    for n in range(HISTORY + 5):
        assert st.record(Attempt(f"c{n}", float(n), "poll", Outcome.DEPLOYED, 1.5, "healthy"))
    assert not st.record(Attempt(f"c{HISTORY + 4}", 99.0, "poll", Outcome.DEPLOYED, 2.0,
                                 "healthy"))  # (a repeat of the newest is not added)
    st.save(tmp_path / "state.json")
    back = State.load(tmp_path / "state.json")
    assert back == st and len(back.history) == HISTORY
    assert back.history[0].commit == "c5" and back.history[-1].duration == 1.5
