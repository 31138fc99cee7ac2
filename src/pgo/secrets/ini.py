"""sops' INI store: an INI file to the tree and back, as gopkg.in/ini.v1 reads and writes it.

sops loads INI with go-ini's defaults and AllowNonUniqueSections: sections in file order
(the keys before the first one are the DEFAULT section), `key = value` or `key: value`,
values in backticks, in three double quotes (over several lines) or plain (then a `#` or
`;` starts a comment and surrounding quotes are dropped), comment lines kept as the comment
of the key or section below them. It writes them back as go-ini 1.67 does: `=` aligned per
section, a blank line between sections, a value quoted when it must be.
"""

from __future__ import annotations

import re

from pgo.secrets.sops import Malformed
from pgo.secrets.tree import Branch, Comment, Item, shown, val_to_string

_GO_SPACE = " \t\n\v\f\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007" \
            "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
DEFAULT_SECTION = "DEFAULT"


def _trim(s: str) -> str:
    return s.strip(_GO_SPACE)


class _Section:
    def __init__(self, name: str) -> None:
        self.name = name
        self.comment = ""
        self.keys: dict[str, tuple[str, str]] = {}  # name -> (value, comment), in order


def load(data: bytes) -> list[Branch]:
    text = data.decode("utf-8", "surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines(keepends=True)
    sections = [_Section(DEFAULT_SECTION)]
    comment = ""
    i = 0
    while i < len(lines):
        raw = lines[i]
        i += 1
        line = raw.lstrip(_GO_SPACE)
        if not line:
            continue
        if line[0] in "#;":
            comment += line
            continue
        if line[0] == "[":
            close = line.rfind("]")
            if close < 0:
                raise Malformed(f"line {i}: an unclosed section")
            name = line[1:close]
            if not name:
                raise Malformed(f"line {i}: an empty section name")
            m = re.search("[#;]", line[close + 1:])
            if m:
                comment += line[close + 1 + m.start():]
            sec = _Section(name)
            sec.comment = _trim(comment)
            comment = ""
            sections.append(sec)
            continue
        kname, offset = _ini_key_name(line, i)
        if kname == "-":
            raise Malformed(f"line {i}: an auto-numbered key (-), which sops can not keep")
        value, i, comment = _ini_value(line[offset:], lines, i, comment)
        sec = sections[-1]
        sec.keys[kname] = (value, _trim(comment))
        comment = ""
    branch = Branch()
    for sec in sections:
        items = Branch()
        if sec.comment:
            items.append(Item(Comment(_strip_comment_char(sec.comment)), None))
        for k, (v, c) in sec.keys.items():
            items.append(Item(k, v))
            if c:
                items.append(Item(Comment(_strip_comment_char(c)), None))
        branch.append(Item(sec.name, items))
    return [branch]


def _strip_comment_char(c: str) -> str:
    if c.startswith(";"):
        return c.lstrip("; ")
    if c.startswith("#"):
        return c.lstrip("# ")
    return c


def _ini_key_name(line: str, n: int) -> tuple[str, int]:
    quote = ""
    if line[0] == '"':
        quote = '"""' if len(line) > 6 and line[:3] == '"""' else '"'
    elif line[0] == "`":
        quote = "`"
    if quote:
        start = len(quote)
        pos = line.find(quote, start)
        if pos < 0:
            raise Malformed(f"line {n}: a key without its closing quote")
        j = re.search("[=:]", line[pos + start:])
        if not j:
            raise Malformed(f"line {n}: no = or : after the key")
        end = pos + j.start()
        return _trim(line[start:pos]), end + start + 1
    j = re.search("[=:]", line)
    if not j:
        raise Malformed(f"line {n}: neither a key = value, a [section] nor a comment")
    if j.start() == 0:
        raise Malformed(f"line {n}: an empty key name")
    return _trim(line[:j.start()]), j.start() + 1


def _ini_value(rest: str, lines: list[str], i: int, comment: str) -> tuple[str, int, str]:
    """go-ini's parser.readValue with sops' options; returns (value, next line, comment)."""
    line = rest.lstrip(_GO_SPACE)
    if not line:
        return "", i, comment
    quote = '"""' if len(line) > 3 and line[:3] == '"""' else ("`" if line[0] == "`" else "")
    if quote:
        start = len(quote)
        pos = line[start:].rfind(quote)
        if pos >= 0:
            return line[start:pos + start], i, comment
        value = line[start:]
        while True:  # readMultilines
            if i >= len(lines):
                raise Malformed(f"line {i}: a quoted value that never ends")
            nxt = lines[i]
            i += 1
            pos = nxt.rfind(quote)
            if pos >= 0:
                value += nxt[:pos]
                m = re.search("[#;]", nxt[pos:])
                if m:
                    comment += _trim(nxt[pos + m.start():])
                return value, i, comment
            value += nxt
    line = _trim(line)
    if line.endswith("\\"):  # continuation lines
        value = line[:-1]
        while i < len(lines):
            nxt = _trim(lines[i])
            i += 1
            if not nxt:
                break
            value += nxt
            if not value.endswith("\\"):
                break
            value = value[:-1]
        return value, i, comment
    m = re.search("[#;]", line)
    if m:
        comment += line[m.start():]
        line = _trim(line[:m.start()])
    for q in ("'", '"'):
        if len(line) >= 2 and line[0] == q and line[-1] == q and line.find(q, 1) == len(line) - 1:
            return line[1:-1], i, comment
    return line, i, comment


def emit(branches: list[Branch]) -> str:
    """sops' ini encodeTree, then go-ini's File.WriteTo (PrettyFormat, PrettySection)."""
    sections: list[_Section] = []
    for branch in branches:
        for item in branch:
            if isinstance(item.key, Comment):
                continue
            if not isinstance(item.value, Branch):
                raise Malformed(f"{shown(item.key)} is not a section")
            sec = _Section(item.key)
            entries = list(item.value)
            if entries and isinstance(entries[0].key, Comment):
                sec.comment = entries.pop(0).key.value  # type: ignore[union-attr]
            last = ""
            for e in entries:
                if isinstance(e.key, Comment):
                    if last:
                        sec.keys[last] = (sec.keys[last][0], e.key.value)
                    continue
                if isinstance(e.value, list):
                    raise Malformed(f"{shown(item.key + '/' + e.key)} holds a list or a map")
                value = e.value if isinstance(e.value, str) else val_to_string(e.value)
                sec.keys[e.key] = (value, sec.keys.get(e.key, ("", ""))[1])
                last = e.key
            sections.append(sec)
    out: list[str] = []
    for n, sec in enumerate(sections):
        if sec.comment:
            out += [_comment_line(ln, False) for ln in sec.comment.split("\n")]
        if n > 0 or sec.name.upper() != DEFAULT_SECTION:
            out.append(f"[{sec.name}]\n")
        elif not sec.keys:
            continue
        names = {k: _quote_key(k) for k in sec.keys}
        align = max((len(q.encode("utf-8", "surrogateescape")) for q in names.values()),
                    default=0)
        for k, (value, comment) in sec.keys.items():
            if comment:
                out += [_comment_line(ln, True) for ln in comment.split("\n")]
            q = names[k]
            pad = " " * (align - len(q.encode("utf-8", "surrogateescape")))
            out.append(f"{q}{pad} = {_quote_value(value)}\n")
        if n < len(sections) - 1:
            out.append("\n")
    return "".join(out)


def _comment_line(line: str, key: bool) -> str:
    if line[:1] not in ("#", ";"):
        return "; " + (_trim(line) if key else line) + "\n"
    return line[0] + " " + _trim(line[1:]) + "\n"


def _quote_key(k: str) -> str:
    if '"' in k or "=" in k or ":" in k:
        return "`" + k + "`"
    if "`" in k:
        return '"""' + k + '"""'
    return k


def _quote_value(v: str) -> str:
    if "\n" in v or "`" in v:
        return '"""' + v + '"""'
    if "#" in v or ";" in v:
        return "`" + v + "`"
    if _trim(v) != v:
        return '"' + v + '"'
    return v

