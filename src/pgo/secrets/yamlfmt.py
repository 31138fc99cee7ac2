"""sops' YAML store: an encrypted YAML file to the tree, and the tree to YAML as sops writes
it (go-yaml v3 with an indent of 4).

Reading: PyYAML parses (its scanner is taught to keep comments); each scalar is then typed
as go-yaml v3 types it (YAML 1.2-ish: `yes` is text, `0x1F` and `017` are numbers, an
unquoted date is a timestamp), which decides the MAC. sops turns comments into entries of
the mapping or list around them; a comment line goes before the entry that follows it (after
the last one when it ends a block), a comment at the end of a value's line goes before that
entry, marked inline. Aliases are expanded, as sops expands them, within a budget.

Writing: sops builds go-yaml nodes (comments as head, line and foot comments) and encodes
them; `_Emitter` is go-yaml v3's emitter (emitterc.go), ported function by function for what
sops' nodes need (block and empty flow collections, the four scalar styles, comments, the
!!binary tag), so that the plaintext is byte for byte what `sops decrypt` prints.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
import yaml.composer
import yaml.constructor
import yaml.nodes
import yaml.parser
import yaml.reader
import yaml.resolver
import yaml.scanner

from pgo.secrets import gonum
from pgo.secrets.sops import Document, Malformed
from pgo.secrets.tree import Branch, Comment, Item, Timestamp, Value, seq

MAX_VALUES = 200_000  # values built, aliases expanded: a bound on alias bombs
MAX_DEPTH = 256
BEST_INDENT = 4  # sops' YAML indent

# -- reading --------------------------------------------------------------------------------

_BREAKS = "\0\r\n\x85\u2028\u2029"


@dataclass
class _RawComment:
    line: int
    column: int
    text: str  # without the '#'
    inline: bool


class _Loader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,
              yaml.composer.Composer, yaml.resolver.BaseResolver):
    """PyYAML's pure-Python loader that keeps comments and leaves tags unresolved."""

    def __init__(self, text: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.resolver.BaseResolver.__init__(self)
        self.comments: list[_RawComment] = []
        self.doc_starts: list[int] = []

    def _comment(self) -> None:
        start = self.pointer
        mark = self.get_mark()
        while self.peek() not in _BREAKS:
            self.forward()
        buf: str = self.buffer
        line_start = buf.rfind("\n", 0, start) + 1
        self.comments.append(_RawComment(mark.line, mark.column, buf[start + 1:self.pointer],
                                         bool(buf[line_start:start].strip())))

    def scan_to_next_token(self) -> None:
        if self.index == 0 and self.peek() == "\ufeff":
            self.forward()
        found = False
        while not found:
            while self.peek() == " ":
                self.forward()
            if self.peek() == "#":
                self._comment()
            if self.scan_line_break():  # type: ignore[no-untyped-call]
                if not self.flow_level:
                    self.allow_simple_key = True
            else:
                found = True

    def scan_block_scalar_ignored_line(self, start_mark: Any) -> None:
        while self.peek() == " ":
            self.forward()
        if self.peek() == "#":
            self._comment()
        ch = self.peek()
        if ch not in _BREAKS:
            raise yaml.scanner.ScannerError(
                "while scanning a block scalar", start_mark,
                f"expected a comment or a line break, but found {ch!r}", self.get_mark())
        self.scan_line_break()  # type: ignore[no-untyped-call]

    def compose_document(self) -> Any:
        start = self.get_event()  # type: ignore[no-untyped-call]
        self.doc_starts.append(start.start_mark.line)
        node = self.compose_node(None, None)  # type: ignore[arg-type]
        self.get_event()  # type: ignore[no-untyped-call]
        self.anchors = {}
        return node

    def compose_scalar_node(self, anchor: Any) -> Any:
        event = self.get_event()  # type: ignore[no-untyped-call]
        node = yaml.nodes.ScalarNode(event.tag or "", event.value, event.start_mark,
                                     event.end_mark, style=event.style)
        if anchor is not None:
            self.anchors[anchor] = node
        return node

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        return ""


def _documents(data: bytes) -> tuple[list[Any], _Loader]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("not UTF-8 text") from None
    loader = _Loader(text)
    nodes = []
    try:
        while loader.check_node():
            nodes.append(loader.get_node())
    except yaml.MarkedYAMLError as e:
        where = f" at line {e.problem_mark.line + 1}" if e.problem_mark else ""
        raise Malformed(f"not valid YAML: {e.problem or e.context}{where}") from None
    except yaml.YAMLError as e:  # a ReaderError: a character YAML does not allow
        raise Malformed(f"not valid YAML: {type(e).__name__}") from None
    except RecursionError:
        raise Malformed("nested too deeply") from None
    finally:
        loader.dispose()
    return nodes, loader


def has_metadata(data: bytes) -> bool:
    """A top-level `sops` map with a `mac` in the first document."""
    nodes, _ = _documents(data)
    if not nodes or not isinstance(nodes[0], yaml.MappingNode):
        return False
    for k, v in nodes[0].value:
        if isinstance(k, yaml.ScalarNode) and k.value == "sops" and \
                isinstance(v, yaml.MappingNode):
            return any(isinstance(kk, yaml.ScalarNode) and kk.value == "mac" for kk, _ in v.value)
    return False


def load(data: bytes) -> Document:
    nodes, loader = _documents(data)
    branches: list[Branch] = []
    for n, node in enumerate(nodes):
        builder = _Builder()
        if isinstance(node, yaml.ScalarNode) and node.tag == "" and node.style is None \
                and node.value in ("", "~", "null", "Null", "NULL"):
            branch = Branch()  # an empty document
        elif not isinstance(node, yaml.MappingNode):
            raise Malformed("a YAML document in it is not a map")
        else:
            built = builder.value(node, [], 0)
            assert isinstance(built, Branch)
            branch = built
        starts = loader.doc_starts
        lo = starts[n] if n else -1
        hi = starts[n + 1] if n + 1 < len(starts) else 1 << 62
        comments = [c for c in loader.comments if lo <= c.line < hi or (n == 0 and c.line < lo)]
        builder.place_comments(branch, comments)
        branches.append(branch)
    if not branches:
        raise Malformed("it is empty")
    meta: Branch | None = None
    for bi, branch in enumerate(branches):
        kept = Branch()
        for item in branch:
            if item.key == "sops":
                if bi == 0:
                    if meta is not None:
                        raise Malformed("it has two sops entries")
                    if not isinstance(item.value, Branch):
                        raise Malformed("its sops entry is not a map")
                    meta = item.value
                continue
            kept.append(item)
        branches[bi] = kept
    return Document(branches, meta)


@dataclass
class _Entry:
    """Where a comment may go: before or after entry `index` of `container`."""
    container: list[Any]
    index: int
    line: int  # of the key, or of the `-`
    column: int
    lines: set[int]  # lines a comment at their end belongs to this entry
    scalar: bool = True  # its value is a scalar (else a comment on its line is the key's)


@dataclass
class _Builder:
    count: int = 0
    entries: list[_Entry] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    containers: dict[int, list[Any]] = field(default_factory=dict)

    def value(self, node: Any, path: list[str], depth: int) -> Value:
        self.count += 1
        if self.count > MAX_VALUES or depth > MAX_DEPTH:
            raise Malformed("too many or too deeply nested values (aliases?)")
        first = id(node) not in self.seen
        self.seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            branch = Branch()
            names: set[str] = set()
            for k, v in node.value:
                key = self.key(k)
                if key in names:
                    raise Malformed(f"the key {'/'.join(path + [key])} is there twice")
                names.add(key)
                if first:
                    lines = {k.start_mark.line}
                    if isinstance(v, yaml.ScalarNode) and v.style not in ("|", ">"):
                        lines |= {v.start_mark.line, v.end_mark.line}
                    elif isinstance(v, yaml.ScalarNode):
                        lines.add(v.start_mark.line)
                    self.entries.append(_Entry(branch, len(branch), k.start_mark.line,
                                               k.start_mark.column, lines,
                                               isinstance(v, yaml.ScalarNode)))
                branch.append(Item(key, self.value(v, path + [key], depth + 1)))
            return branch
        if isinstance(node, yaml.SequenceNode):
            items: list[Value] = []
            for v in node.value:
                if first:
                    col = node.start_mark.column if not node.flow_style else v.start_mark.column
                    lines = {v.start_mark.line}
                    if isinstance(v, yaml.ScalarNode) and v.style not in ("|", ">"):
                        lines.add(v.end_mark.line)
                    self.entries.append(_Entry(items, len(items), v.start_mark.line, col, lines))
                items.append(self.value(v, path, depth + 1))
            return items
        return _scalar(node)

    def key(self, node: Any) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise Malformed("a key in it is a list or a map")
        value = _scalar(node)
        if not isinstance(value, str) or isinstance(value, Timestamp):
            raise Malformed("a key in it is not text (sops keeps only text keys)")
        return value

    def place_comments(self, root: Branch, comments: list[_RawComment]) -> None:
        """Put each comment where sops' tree has it (see the module's docstring)."""
        entries = sorted(self.entries, key=lambda e: (e.line, e.column))
        inserts: dict[int, list[tuple[int, int, Comment, list[Any]]]] = {}

        def put(container: list[Any], pos: int, c: _RawComment, inline: bool) -> None:
            inserts.setdefault(id(container), []).append(
                (pos, len(inserts.get(id(container), [])), Comment(c.text, inline), container))

        for c in comments:
            if c.inline:
                owner = [e for e in entries if c.line in e.lines]
                if owner:  # `key: # note` over a block value: go-yaml's key line comment
                    put(owner[-1].container, owner[-1].index, c, owner[-1].scalar)
                    continue
            after = [e for e in entries if e.line > c.line]
            if after and after[0].column >= c.column:
                put(after[0].container, after[0].index, c, False)
                continue
            before = [e for e in entries if e.line < c.line and e.column <= c.column]
            if before:
                last = max(before, key=lambda e: (e.line, e.column))
                put(last.container, last.index + 1, c, False)
            elif after:
                put(after[0].container, after[0].index, c, False)
            else:
                put(root, len(root), c, False)
        for pending in inserts.values():
            container = pending[0][3]
            for pos, _, comment, _ in sorted(pending, key=lambda p: (p[0], p[1]), reverse=True):
                container.insert(pos, Item(comment, None) if isinstance(container, Branch)
                                 else comment)


# go-yaml v3's resolve.go

_RESOLVABLE = ("", "!!str", "!!bool", "!!int", "!!float", "!!null", "!!timestamp")
_MAP: dict[str, tuple[str, Value]] = {}
for _words, _tag, _value in (
        (("true", "True", "TRUE"), "!!bool", True), (("false", "False", "FALSE"), "!!bool", False),
        (("", "~", "null", "Null", "NULL"), "!!null", None),
        ((".nan", ".NaN", ".NAN"), "!!float", math.nan),
        ((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), "!!float", math.inf),
        (("-.inf", "-.Inf", "-.INF"), "!!float", -math.inf), (("<<",), "!!merge", "<<")):
    for _w in _words:
        _MAP[_w] = (_tag, _value)
_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


def _short_tag(tag: str) -> str:
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix):] if tag.startswith(prefix) else tag


def _int_value(v: int) -> int:
    if v not in gonum.INT64:
        raise Malformed("an integer in it does not fit 64 bits (sops can not keep it)")
    return v


def resolve(tag: str, text: str) -> tuple[str, Value]:
    """go-yaml v3's resolve(tag, in): the tag and value of a scalar."""
    if tag not in _RESOLVABLE:
        return tag, text
    hint = "N" if text == "" else ("S" if text[0] in "+-" else "D" if text[0].isdigit()
                                   and text[0].isascii() else "M" if text[0] in "yYnNtTfFoO~"
                                   else "." if text[0] == "." else "")
    if hint and tag not in ("!!str", "!!binary"):
        if text in _MAP:
            return _MAP[text]
        if hint == ".":
            f = gonum.parse_float(text)
            if f is not None:
                return "!!float", f
        elif hint in ("D", "S"):
            if tag in ("", "!!timestamp"):
                ts = gonum.yaml_timestamp(text)
                if ts is not None:
                    return "!!timestamp", Timestamp(ts)
            plain = text.replace("_", "")
            iv = gonum.parse_int_base0(plain)
            if iv is not None and -(1 << 63) <= iv <= gonum.UINT64_MAX:
                return "!!int", _int_value(iv)
            if _YAML_FLOAT.match(plain):
                f = gonum.parse_float(plain)
                if f is not None:
                    return "!!float", f
    return "!!str", text


def _scalar(node: Any) -> Value:
    tag = _short_tag(node.tag)
    if tag == "!!str" or (tag in ("", "!") and node.style is not None):
        return str(node.value)
    if tag == "!!binary":
        try:
            raw = base64.b64decode(re.sub(r"[\r\n]", "", node.value), validate=True)
        except binascii.Error:
            raise Malformed("a !!binary value in it is not base64") from None
        return raw.decode("utf-8", "surrogateescape")
    rtag, value = resolve(tag, str(node.value))
    if tag in ("", rtag, "!!str") or tag not in _RESOLVABLE:
        return value if tag in _RESOLVABLE else str(node.value)
    if tag == "!!float" and rtag == "!!int":
        assert isinstance(value, int)
        return float(value)
    raise Malformed(f"a value in it is tagged {tag} but is not one")


# -- writing: sops' appendTreeBranch and go-yaml's encoder.node, then its emitter ----------

@dataclass
class _Node:
    kind: str  # "map", "seq" or "scalar"
    value: str = ""
    style: str = "plain"  # plain, single, double, literal
    tag: str = ""  # "" or "!!binary"
    content: list[_Node] = field(default_factory=list)
    head: str = ""
    line: str = ""
    foot: str = ""


def _add_head(node: _Node, comments: list[str]) -> list[str]:
    if comments:
        text = "#" + "\n#".join(comments)
        node.head = text + "\n" + node.head if node.head else text
    return []


def _add_foot(node: _Node, comments: list[str]) -> None:
    if comments:
        text = "#" + "\n#".join(comments)
        node.foot = node.foot + "\n" + text if node.foot else text


def _add_line(node: _Node, comments: list[str]) -> list[str]:
    if comments:
        text = "#" + "\n#".join(comments)
        node.line = node.line + "\n" + text if node.line else text
    return []


def _tree_node(value: Value) -> _Node:
    """sops' treeValueToNode."""
    if isinstance(value, Branch):
        node = _Node("map")
        head: list[str] = []
        inline: list[str] = []
        beginning = True
        for item in value:
            if isinstance(item.key, Comment):
                (inline if item.key.inline else head).append(item.key.value)
                continue
            if beginning:
                head = _add_head(node, head)
                beginning = False
            key = _scalar_node(item.key)
            head = _add_head(key, head)
            val = _tree_node(item.value)
            inline = _add_line(val, inline)
            node.content += [key, val]
        head += inline
        if head:
            if beginning:
                _add_head(node, head)
            else:
                _add_foot(node.content[-2], head)
        return node
    items = seq(value)
    if items is not None:
        node = _Node("seq")
        head, inline = [], []
        beginning = True
        for v in items:
            if isinstance(v, Comment):
                (inline if v.inline else head).append(v.value)
                continue
            if beginning:
                head = _add_head(node, head)
                beginning = False
            child = _tree_node(v)
            head = _add_head(child, head)
            inline = _add_line(child, inline)
            node.content.append(child)
        head += inline
        if head:
            if beginning:
                _add_head(node, head)
            else:
                _add_foot(node.content[-1], head)
        return node
    return _scalar_node(value)


_OLD_BOOLS = {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "n", "N", "no", "No", "NO",
              "off", "Off", "OFF"}
_BASE60 = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")


def _scalar_node(value: Value) -> _Node:
    """yaml.Node.Encode(value): go-yaml's marshalling of a Go value to a scalar node, whose
    style is then the one go-yaml's emitter chose for it."""
    if value is None:
        return _Node("scalar", "null")
    if isinstance(value, bool):
        return _Node("scalar", "true" if value else "false")
    if isinstance(value, int):
        return _Node("scalar", str(value))
    if isinstance(value, float):
        text = {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}.get(
            gonum.format_float(value, "g"), gonum.format_float(value, "g"))
        return _Node("scalar", text)
    if isinstance(value, Timestamp):
        return _Node("scalar", str(value))
    if isinstance(value, Comment):
        raise Malformed("a comment where a value belongs")
    s = str(value)
    if re.search("[\udc80-\udcff]", s):  # bytes that are not UTF-8: go-yaml writes !!binary
        raw = s.encode("utf-8", "surrogateescape")
        b64 = base64.b64encode(raw).decode()
        chunks = [b64[i:i + 70] for i in range(0, len(b64), 70)] or [""]
        text = "".join(c + "\n" for c in chunks) if len(b64) // 70 + 1 > 1 else b64
        return _Node("scalar", text, "literal" if "\n" in text else "plain", "!!binary")
    rtag, _ = resolve("", s)
    can_plain = rtag == "!!str" and not (_BASE60.match(s) or s in _OLD_BOOLS)
    style = "literal" if "\n" in s else "plain" if can_plain else "double"
    style = _select_style(style, _analyze(s), flow=False, simple_key=False)
    if style == "literal" and s and _is_break(s[0]):
        # Node.Encode writes the value and parses it back; its literal writer ends the
        # `|` line with the value's first line break, so that break is lost (sops prints
        # "\nabc" as abc). The node keeps the literal style.
        s = s[2:] if s.startswith("\r\n") else s[1:]
    # go-yaml's parser tags a plain `<<` !!merge, and its encoder then writes the tag
    return _Node("scalar", s, style, "!!merge" if style == "plain" and s == "<<" else "")


def emit(branches: list[Branch]) -> bytes:
    """sops' YAML EmitPlainFile: each branch a document, through go-yaml's encoder."""
    em = _Emitter()
    events: list[_Event] = [_Event("stream-start")]
    for branch in branches:
        events.append(_Event("doc-start"))
        _events(_tree_node(branch), "", events)
        events.append(_Event("doc-end"))
    events.append(_Event("stream-end"))
    em.run(events)
    return "".join(em.out).encode("utf-8", "surrogateescape")


@dataclass
class _Event:
    kind: str  # stream-start/end, doc-start/end, map-start/end, seq-start/end, scalar
    value: str = ""
    style: str = "plain"
    tag: str = ""
    head: str = ""
    line: str = ""
    foot: str = ""
    tail: str = ""


def _events(node: _Node, tail: str, out: list[_Event]) -> None:
    """go-yaml's encoder.node for the nodes sops builds (no anchors, no flow styles)."""
    if node.kind == "map":
        out.append(_Event("map-start", head=node.head, tail=tail))
        t = ""
        for i in range(0, len(node.content), 2):
            k, v = node.content[i], node.content[i + 1]
            foot = k.foot
            if foot:
                k = _Node(k.kind, k.value, k.style, k.tag, k.content, k.head, k.line, "")
            _events(k, t, out)
            t = foot
            _events(v, "", out)
        out.append(_Event("map-end", tail=t, line=node.line, foot=node.foot))
    elif node.kind == "seq":
        out.append(_Event("seq-start", head=node.head))
        for child in node.content:
            _events(child, "", out)
        out.append(_Event("seq-end", line=node.line, foot=node.foot))
    else:
        out.append(_Event("scalar", node.value, node.style, node.tag, node.head, node.line,
                          node.foot, tail))


# -- go-yaml v3 emitterc.go -----------------------------------------------------------------

def _printable(c: str) -> bool:
    o = ord(c)
    return (o == 0x0A or 0x20 <= o <= 0x7E or 0xA0 <= o <= 0xD7FF
            or (0xE000 <= o <= 0xFFFD and o != 0xFEFF))


def _is_break(c: str) -> bool:
    return c in "\r\n\x85\u2028\u2029"


@dataclass
class _Analysis:
    multiline: bool = False
    flow_plain: bool = True
    block_plain: bool = True
    single: bool = True
    block: bool = True


def _analyze(value: str) -> _Analysis:
    """yaml_emitter_analyze_scalar (the emitter writes Unicode)."""
    if not value:
        return _Analysis(False, False, True, True, False)
    block_ind = flow_ind = line_breaks = special = tabs = False
    leading_space = leading_break = trailing_space = trailing_break = False
    break_space = space_break = previous_space = previous_break = False
    if value.startswith(("---", "...")):
        block_ind = flow_ind = True
    preceded_by_ws = True
    n = len(value)
    for i, c in enumerate(value):
        followed_by_ws = i + 1 >= n or value[i + 1] in " \t"
        if i == 0:
            if c in "#,[]{}&*!|>'\"%@`":
                flow_ind = block_ind = True
            elif c in "?:":
                flow_ind = True
                if followed_by_ws:
                    block_ind = True
            elif c == "-" and followed_by_ws:
                flow_ind = block_ind = True
        else:
            if c in ",?[]{}":
                flow_ind = True
            elif c == ":":
                flow_ind = True
                if followed_by_ws:
                    block_ind = True
            elif c == "#" and preceded_by_ws:
                flow_ind = block_ind = True
        if c == "\t":
            tabs = True
        elif not _printable(c):
            special = True
        if c == " ":
            if i == 0:
                leading_space = True
            if i == n - 1:
                trailing_space = True
            if previous_break:
                break_space = True
            previous_space, previous_break = True, False
        elif _is_break(c):
            line_breaks = True
            if i == 0:
                leading_break = True
            if i == n - 1:
                trailing_break = True
            if previous_space:
                space_break = True
            previous_space, previous_break = False, True
        else:
            previous_space = previous_break = False
        preceded_by_ws = c in " \t\0" or _is_break(c)
    a = _Analysis(multiline=line_breaks)
    if leading_space or leading_break or trailing_space or trailing_break:
        a.flow_plain = a.block_plain = False
    if trailing_space:
        a.block = False
    if break_space:
        a.flow_plain = a.block_plain = a.single = False
    if space_break or tabs or special:
        a.flow_plain = a.block_plain = a.single = False
    if space_break or special:
        a.block = False
    if line_breaks:
        a.flow_plain = a.block_plain = False
    if flow_ind:
        a.flow_plain = False
    if block_ind:
        a.block_plain = False
    return a


def _select_style(style: str, a: _Analysis, *, flow: bool, simple_key: bool,
                  value: str | None = None, tagged: bool = False) -> str:
    """yaml_emitter_select_scalar_style (implicit scalars, or the !!binary tag)."""
    empty = (value == "") if value is not None else False
    if simple_key and a.multiline:
        style = "double"
    if style == "plain":
        if (flow and not a.flow_plain) or (not flow and not a.block_plain):
            style = "single"
        if empty and (flow or simple_key):
            style = "single"
    if style == "single" and not a.single:
        style = "double"
    if style == "literal" and (not a.block or flow or simple_key):
        style = "double"
    return style


_ESCAPES = {0x00: "0", 0x07: "a", 0x08: "b", 0x09: "t", 0x0A: "n", 0x0B: "v", 0x0C: "f",
            0x0D: "r", 0x1B: "e", 0x22: '"', 0x5C: "\\", 0x85: "N", 0xA0: "_", 0x2028: "L",
            0x2029: "P"}

_STATES_SEQ_ITEM = "block-seq-item"


class _Emitter:
    """go-yaml v3's emitter, for the events `_events` makes (best_indent 4, unlimited
    width, Unicode, LF line breaks)."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.events: list[_Event] = []
        self.head_i = 0
        self.states: list[str] = []
        self.state = "stream-start"
        self.indents: list[int] = []
        self.indent = -1
        self.flow_level = 0
        self.root_context = self.sequence_context = self.mapping_context = False
        self.simple_key_context = False
        self.line = self.column = 0
        self.whitespace = self.indention = self.open_ended = self.space_above = False
        self.foot_indent = -1
        self.head_comment = self.line_comment = self.foot_comment = self.tail_comment = ""
        self.key_line_comment = ""
        self.scalar = ""
        self.analysis = _Analysis()
        self.scalar_style = "plain"
        self.tag_handle = self.tag_suffix = ""

    # output primitives
    def put(self, s: str) -> None:
        self.out.append(s)
        self.column += 1

    def put_break(self) -> None:
        self.out.append("\n")
        if self.column == 0:
            self.space_above = True
        self.column = 0
        self.line += 1
        self.indention = True

    def write(self, c: str) -> None:
        self.out.append(c)
        self.column += 1

    def write_break(self, c: str) -> None:
        if c == "\n":
            self.put_break()
        else:
            self.write(c)
            if self.column == 0:
                self.space_above = True
            self.column = 0
            self.line += 1
            self.indention = True

    def write_indicator(self, ind: str, need_ws: bool, is_ws: bool, is_indention: bool) -> None:
        if need_ws and not self.whitespace:
            self.put(" ")
        for c in ind:
            self.write(c)
        self.whitespace = is_ws
        self.indention = self.indention and is_indention
        self.open_ended = False

    def write_indent(self) -> None:
        indent = max(self.indent, 0)
        if not self.indention or self.column > indent or \
                (self.column == indent and not self.whitespace):
            self.put_break()
        if self.foot_indent == indent:
            self.put_break()
        while self.column < indent:
            self.put(" ")
        self.whitespace = True
        self.space_above = False
        self.foot_indent = -1

    def write_comment(self, comment: str) -> None:
        breaks = pound = False
        i = 0
        while i < len(comment):
            c = comment[i]
            if _is_break(c):
                self.write_break(c)
                breaks, pound = True, False
            else:
                if breaks:
                    self.write_indent()
                if not pound:
                    if c != "#":
                        self.put("#")
                        self.put(" ")
                    pound = True
                self.write(c)
                self.indention = False
                breaks = False
            i += 1
        if not breaks:
            self.put_break()
        self.whitespace = True

    # comments
    def process_head_comment(self) -> None:
        if self.tail_comment:
            self.write_indent()
            self.write_comment(self.tail_comment)
            self.tail_comment = ""
            self.foot_indent = max(self.indent, 0)
        if not self.head_comment:
            return
        self.write_indent()
        self.write_comment(self.head_comment)
        self.head_comment = ""

    def process_line_comment(self) -> None:
        if not self.line_comment:
            return
        if not self.whitespace:
            self.put(" ")
        self.write_comment(self.line_comment)
        self.line_comment = ""

    def process_foot_comment(self) -> None:
        if not self.foot_comment:
            return
        self.write_indent()
        self.write_comment(self.foot_comment)
        self.foot_comment = ""
        self.foot_indent = max(self.indent, 0)

    # the state machine
    def run(self, events: list[_Event]) -> None:
        self.events = events
        while self.head_i < len(events):
            ev = events[self.head_i]
            self.analyze_event(ev)
            getattr(self, "st_" + self.state.replace("-", "_"))(ev)
            self.head_i += 1

    def analyze_event(self, ev: _Event) -> None:
        self.tag_handle = self.tag_suffix = ""
        self.scalar = ""
        if ev.head:
            self.head_comment = ev.head
        if ev.line:
            self.line_comment = ev.line
        if ev.foot:
            self.foot_comment = ev.foot
        if ev.tail:
            self.tail_comment = ev.tail
        if ev.kind == "scalar":
            if ev.tag:
                self.tag_handle, self.tag_suffix = "!!", ev.tag[2:]
            self.scalar = ev.value
            self.analysis = _analyze(ev.value)

    def next_event(self, offset: int = 1) -> _Event | None:
        j = self.head_i + offset
        return self.events[j] if j < len(self.events) else None

    def increase_indent(self, flow: bool, indentless: bool) -> None:
        self.indents.append(self.indent)
        if self.indent < 0:
            self.indent = BEST_INDENT if flow else 0
        elif not indentless:
            if self.states[-1] == _STATES_SEQ_ITEM:
                self.indent += 2
            else:
                self.indent = BEST_INDENT * ((self.indent + BEST_INDENT) // BEST_INDENT)

    def pop_state(self) -> None:
        self.state = self.states.pop()

    def st_stream_start(self, ev: _Event) -> None:
        self.indent = -1
        self.line = self.column = 0
        self.whitespace = self.indention = self.space_above = True
        self.foot_indent = -1
        self.state = "first-document-start"

    def st_first_document_start(self, ev: _Event) -> None:
        self.document_start(ev, True)

    def st_document_start(self, ev: _Event) -> None:
        self.document_start(ev, False)

    def document_start(self, ev: _Event, first: bool) -> None:
        if ev.kind == "doc-start":
            if not first:
                self.write_indent()
                self.write_indicator("---", True, False, False)
                self.write_indent()
            if self.head_comment:
                self.process_head_comment()
                self.put_break()
            self.state = "document-content"
        elif ev.kind == "stream-end":
            if self.open_ended:
                self.write_indicator("...", True, False, False)
                self.write_indent()
            self.state = "end"

    def st_document_content(self, ev: _Event) -> None:
        self.states.append("document-end")
        self.process_head_comment()
        self.emit_node(ev, root=True)
        self.process_line_comment()
        self.process_foot_comment()

    def st_document_end(self, ev: _Event) -> None:
        self.foot_indent = 0
        self.process_foot_comment()
        self.foot_indent = -1
        self.write_indent()
        self.state = "document-start"

    def trailing_comments(self) -> bool:
        return bool(self.line_comment or self.foot_comment or self.tail_comment)

    def flow_sequence_item(self, ev: _Event, first: bool, trail: bool) -> None:
        if first:
            self.write_indicator("[", True, True, False)
            self.increase_indent(True, False)
            self.flow_level += 1
        if ev.kind == "seq-end":
            self.flow_level -= 1
            self.indent = self.indents.pop()
            if self.column == 0:
                self.write_indent()
            self.write_indicator("]", False, False, False)
            self.process_line_comment()
            self.process_foot_comment()
            self.pop_state()
            return
        if not first and not trail:
            self.write_indicator(",", False, False, False)
        self.process_head_comment()
        if self.column == 0:
            self.write_indent()
        self.states.append("flow-sequence-trail-item" if self.trailing_comments()
                           else "flow-sequence-item")
        self.emit_node(ev, sequence=True)
        if self.trailing_comments():
            self.write_indicator(",", False, False, False)
        self.process_line_comment()
        self.process_foot_comment()

    def st_flow_sequence_first_item(self, ev: _Event) -> None:
        self.flow_sequence_item(ev, True, False)

    def st_flow_sequence_item(self, ev: _Event) -> None:
        self.flow_sequence_item(ev, False, False)

    def st_flow_sequence_trail_item(self, ev: _Event) -> None:
        self.flow_sequence_item(ev, False, True)

    def flow_mapping_key(self, ev: _Event, first: bool, trail: bool) -> None:
        if first:
            self.write_indicator("{", True, True, False)
            self.increase_indent(True, False)
            self.flow_level += 1
        if ev.kind == "map-end":
            if (self.head_comment or self.foot_comment or self.tail_comment) and \
                    not first and not trail:
                self.write_indicator(",", False, False, False)
            self.process_head_comment()
            self.flow_level -= 1
            self.indent = self.indents.pop()
            self.write_indicator("}", False, False, False)
            self.process_line_comment()
            self.process_foot_comment()
            self.pop_state()
            return
        if not first and not trail:
            self.write_indicator(",", False, False, False)
        self.process_head_comment()
        if self.column == 0:
            self.write_indent()
        if self.check_simple_key(ev):
            self.states.append("flow-mapping-simple-value")
            self.emit_node(ev, mapping=True, simple_key=True)
            return
        self.write_indicator("?", True, False, False)
        self.states.append("flow-mapping-value")
        self.emit_node(ev, mapping=True)

    def st_flow_mapping_first_key(self, ev: _Event) -> None:
        self.flow_mapping_key(ev, True, False)

    def st_flow_mapping_key(self, ev: _Event) -> None:
        self.flow_mapping_key(ev, False, False)

    def st_flow_mapping_trail_key(self, ev: _Event) -> None:
        self.flow_mapping_key(ev, False, True)

    def flow_mapping_value(self, ev: _Event, simple: bool) -> None:
        if simple:
            self.write_indicator(":", False, False, False)
        else:
            self.write_indicator(":", True, False, False)
        self.states.append("flow-mapping-trail-key" if self.trailing_comments()
                           else "flow-mapping-key")
        self.emit_node(ev, mapping=True)
        if self.trailing_comments():
            self.write_indicator(",", False, False, False)
        self.process_line_comment()
        self.process_foot_comment()

    def st_flow_mapping_simple_value(self, ev: _Event) -> None:
        self.flow_mapping_value(ev, True)

    def st_flow_mapping_value(self, ev: _Event) -> None:
        self.flow_mapping_value(ev, False)

    def block_sequence_item(self, ev: _Event, first: bool) -> None:
        if first:
            self.increase_indent(False, False)
        if ev.kind == "seq-end":
            self.indent = self.indents.pop()
            self.pop_state()
            return
        self.process_head_comment()
        self.write_indent()
        self.write_indicator("-", True, False, True)
        self.states.append(_STATES_SEQ_ITEM)
        self.emit_node(ev, sequence=True)
        self.process_line_comment()
        self.process_foot_comment()

    def st_block_sequence_first_item(self, ev: _Event) -> None:
        self.block_sequence_item(ev, True)

    def st_block_seq_item(self, ev: _Event) -> None:
        self.block_sequence_item(ev, False)

    def block_mapping_key(self, ev: _Event, first: bool) -> None:
        if first:
            self.increase_indent(False, False)
        self.process_head_comment()
        if ev.kind == "map-end":
            self.indent = self.indents.pop()
            self.pop_state()
            return
        self.write_indent()
        if self.line_comment:
            self.key_line_comment = self.line_comment
            self.line_comment = ""
        if self.check_simple_key(ev):
            self.states.append("block-mapping-simple-value")
            self.emit_node(ev, mapping=True, simple_key=True)
            return
        self.write_indicator("?", True, False, True)
        self.states.append("block-mapping-value")
        self.emit_node(ev, mapping=True)

    def st_block_mapping_first_key(self, ev: _Event) -> None:
        self.block_mapping_key(ev, True)

    def st_block_mapping_key(self, ev: _Event) -> None:
        self.block_mapping_key(ev, False)

    def block_mapping_value(self, ev: _Event, simple: bool) -> None:
        if simple:
            self.write_indicator(":", False, False, False)
        else:
            self.write_indent()
            self.write_indicator(":", True, False, True)
        if self.key_line_comment:
            if ev.kind == "scalar":
                if not self.line_comment:
                    self.line_comment = self.key_line_comment
                    self.key_line_comment = ""
            elif ev.kind in ("map-start", "seq-start"):
                self.line_comment, self.key_line_comment = self.key_line_comment, \
                    self.line_comment
                self.process_line_comment()
                self.line_comment, self.key_line_comment = self.key_line_comment, \
                    self.line_comment
        self.states.append("block-mapping-key")
        self.emit_node(ev, mapping=True)
        self.process_line_comment()
        self.process_foot_comment()

    def st_block_mapping_simple_value(self, ev: _Event) -> None:
        self.block_mapping_value(ev, True)

    def st_block_mapping_value(self, ev: _Event) -> None:
        self.block_mapping_value(ev, False)

    def emit_node(self, ev: _Event, *, root: bool = False, sequence: bool = False,
                  mapping: bool = False, simple_key: bool = False) -> None:
        self.root_context = root
        self.sequence_context = sequence
        self.mapping_context = mapping
        self.simple_key_context = simple_key
        if ev.kind == "scalar":
            self.emit_scalar(ev)
        elif ev.kind == "seq-start":
            nxt = self.next_event()
            empty = nxt is not None and nxt.kind == "seq-end"
            self.state = "flow-sequence-first-item" if self.flow_level or empty \
                else "block-sequence-first-item"
        elif ev.kind == "map-start":
            nxt = self.next_event()
            empty = nxt is not None and nxt.kind == "map-end"
            self.state = "flow-mapping-first-key" if self.flow_level or empty \
                else "block-mapping-first-key"
        else:
            raise Malformed(f"YAML emitter: unexpected {ev.kind}")

    def check_simple_key(self, ev: _Event) -> bool:
        if ev.kind == "scalar":
            if self.analysis.multiline:
                return False
            length = len(self.tag_handle) + len(self.tag_suffix) + len(self.scalar.encode(
                "utf-8", "surrogateescape"))
        elif ev.kind in ("seq-start", "map-start"):
            nxt = self.next_event()
            end = "seq-end" if ev.kind == "seq-start" else "map-end"
            if nxt is None or nxt.kind != end:
                return False
            length = 0
        else:
            return False
        return length <= 128

    def emit_scalar(self, ev: _Event) -> None:
        self.scalar_style = _select_style(ev.style, self.analysis, flow=self.flow_level > 0,
                                          simple_key=self.simple_key_context, value=ev.value,
                                          tagged=bool(ev.tag))
        if self.tag_handle:
            if not self.whitespace:
                self.put(" ")
            for c in self.tag_handle + self.tag_suffix:
                self.write(c)
            self.whitespace = self.indention = False
        self.increase_indent(True, False)
        style, value = self.scalar_style, self.scalar
        if style == "plain":
            self.write_plain(value)
        elif style == "single":
            self.write_single(value)
        elif style == "double":
            self.write_double(value)
        else:
            self.write_literal(value)
        self.indent = self.indents.pop()
        self.pop_state()

    def write_plain(self, value: str) -> None:
        if value and not self.whitespace:
            self.put(" ")
        breaks = False
        for c in value:
            if c == " ":
                self.write(c)
            elif _is_break(c):
                if not breaks and c == "\n":
                    self.put_break()
                self.write_break(c)
                breaks = True
            else:
                if breaks:
                    self.write_indent()
                self.write(c)
                self.indention = False
                breaks = False
        if value:
            self.whitespace = False
        self.indention = False
        if self.root_context:
            self.open_ended = True

    def write_single(self, value: str) -> None:
        self.write_indicator("'", True, False, False)
        breaks = False
        for c in value:
            if c == " ":
                self.write(c)
            elif _is_break(c):
                if not breaks and c == "\n":
                    self.put_break()
                self.write_break(c)
                breaks = True
            else:
                if breaks:
                    self.write_indent()
                if c == "'":
                    self.put("'")
                self.write(c)
                self.indention = False
                breaks = False
        self.write_indicator("'", False, False, False)
        self.whitespace = self.indention = False

    def write_double(self, value: str) -> None:
        self.write_indicator('"', True, False, False)
        bom = value.startswith("\ufeff")
        for c in value:
            o = ord(c)
            if not _printable(c) or bom or _is_break(c) or c in '"\\':
                self.put("\\")
                if o in _ESCAPES:
                    self.put(_ESCAPES[o])
                else:
                    letter, width = ("x", 2) if o <= 0xFF else ("u", 4) if o <= 0xFFFF \
                        else ("U", 8)
                    self.put(letter)
                    for d in f"{o:0{width}X}":
                        self.put(d)
            else:
                self.write(c)
        self.write_indicator('"', False, False, False)
        self.whitespace = self.indention = False

    def block_hints(self, value: str) -> None:
        if value[:1] == " " or (value and _is_break(value[0])):
            self.write_indicator(str(BEST_INDENT), False, False, False)
        self.open_ended = False
        chomp = ""
        if not value or not _is_break(value[-1]):
            chomp = "-"
        elif len(value) == 1:
            chomp = "+"
            self.open_ended = True
        elif _is_break(value[-2]):
            chomp = "+"
            self.open_ended = True
        if chomp:
            self.write_indicator(chomp, False, False, False)

    def write_literal(self, value: str) -> None:
        self.write_indicator("|", True, False, False)
        self.block_hints(value)
        self.process_line_comment()
        self.whitespace = True
        breaks = True
        for c in value:
            if _is_break(c):
                self.write_break(c)
                breaks = True
            else:
                if breaks:
                    self.write_indent()
                self.write(c)
                self.indention = False
                breaks = False
