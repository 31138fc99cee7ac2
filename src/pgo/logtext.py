"""Text a client sent, made safe to put into pgod's log.

A request line, an SSH user name, a header value: whoever sends it chooses every character,
and a newline or a terminal control in it could forge a log line (`NAME//'x\\n[ERROR] ...'`)
or change what an operator's terminal shows. Every such string goes through `untrusted()`
before it is logged: every character that is not printable (C0 and C1 controls, line and
paragraph separators, format characters such as bidi overrides, non-ASCII spaces, lone
surrogates) and the backslash itself come back as Python escapes (`\\n`, `\\x85`,
`\\u202e`, `\\\\`), and the length is bounded, so one log line stays one line and says
what was sent.

`OneLine`, a filter on pgod's log handler, is the net under all of it: whatever a log
record's message holds (a compose or git error quoting a team's file, a name nobody passed
through `untrusted()`), its unprintable characters are escaped the same way (backslashes
are left as they are, and nothing is cut), so no message can add a line or a terminal
control to the log. A traceback (exc_info) is formatted apart and kept as it is.
"""

from __future__ import annotations

import logging

LIMIT = 200  # characters of client text kept in one log line
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def untrusted(text: object, limit: int = LIMIT) -> str:
    """`text` (anything a client chose) as it may appear in a log line."""
    s = str(text)
    cut = len(s) > limit
    if cut:
        s = s[:limit]
    if not (s.isprintable() and "\\" not in s):
        s = "".join(c if c.isprintable() and c != "\\" else _escape(c) for c in s)
    return s + "..." if cut else s


def _escape(c: str) -> str:
    named = _NAMED.get(c)
    if named is not None:
        return named
    n = ord(c)
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def _unprintable(s: str) -> str:
    return "".join(c if c.isprintable() else _escape(c) for c in s)


class OneLine(logging.Filter):
    """A handler's filter: each record's message as one line of printable text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # (logging's own error report is left to it)
            return True
        if not message.isprintable():
            record.msg, record.args = _unprintable(message), ()
        return True
