"""Client text in pgod's log: one request, one line, saying what was sent."""

from __future__ import annotations

import io
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgo.logtext import LIMIT, OneLine, untrusted


@pytest.mark.parametrize(("sent", "logged"), [
    ("web", "web"),
    ("git pull", "git pull"),
    ("x\n[ERROR] forged", "x\\n[ERROR] forged"),
    ("a\rb\tc\x00d\x1b[2J", "a\\rb\\tc\\x00d\\x1b[2J"),
    ("\x85 \x9b \x7f", "\\x85 \\x9b \\x7f"),  # C1 controls and DEL
    ("\u2028\u2029\u202e\u200b", "\\u2028\\u2029\\u202e\\u200b"),  # separators, bidi
    ("\udcff", "\\udcff"),  # a byte that was not UTF-8 (surrogateescape)
    ("a\\nb", "a\\\\nb"),  # a literal backslash-n is told from a newline
    ("café ☕", "café ☕"),
])
def test_untrusted(sent: str, logged: str) -> None:
    assert untrusted(sent) == logged


def test_long_text_is_cut() -> None:
    assert untrusted("x" * 1000) == "x" * LIMIT + "..."
    assert untrusted("\n" * 1000, 3) == "\\n\\n\\n..."


@given(st.text())
def test_one_line_whatever_is_sent(text: str) -> None:
    out = untrusted(text)
    assert len(out.splitlines()) <= 1 and out.isprintable()


def test_no_record_adds_a_line_to_pgods_log() -> None:
    """The net under every log call: a compose error quoting a team's file can not forge
    another service's line or reach the operator's terminal; a traceback stays whole."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    handler.addFilter(OneLine())
    log = logging.getLogger("test.oneline")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        log.error("[%s] compose: %s", "shop", "service \"x\n[other] deployed\x1b[2J\"")
        log.info("C:\\path \u00e9 \u2026 kept")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed:\u2028%s", "x")
    finally:
        log.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert lines[0] == '[ERROR] [shop] compose: service "x\\n[other] deployed\\x1b[2J"'
    assert lines[1] == "[INFO] C:\\path \u00e9 \u2026 kept"
    assert lines[2] == "[ERROR] failed:\\u2028x"
    assert lines[3] == "Traceback (most recent call last):" and "ValueError: boom" in lines
