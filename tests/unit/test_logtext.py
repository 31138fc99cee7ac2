"""Client text in pgod's log: one request, one line, saying what was sent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgo.logtext import LIMIT, untrusted


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
