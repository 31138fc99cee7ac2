"""sops' YAML store: an encrypted YAML file to the tree, and the tree to YAML as sops writes
it (go-yaml v3 with an indent of 4).

Reading: PyYAML parses (its scanner is taught to keep comments); each scalar is then typed
as go-yaml v3 types it (YAML 1.2-ish: `yes` is text, `0x1F` and `017` are numbers, an
unquoted date is a timestamp), which decides the MAC. sops turns comments into entries of
the mapping or list around them; a comment line goes before the entry that follows it (after
the last one when it ends a block), a comment at the end of a value's line goes before that
entry, marked inline. Aliases are expanded, as sops expands them, within a budget.

Writing: sops builds go-yaml nodes (comments as head, line and foot comments, each value
through go-yaml's Node.Encode) and encodes them; here the same nodes become go-yaml's events,
written by `goyaml.Emitter`, the port of go-yaml's emitter, so that the plaintext is byte for
byte what `sops decrypt` prints.
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
import yaml.nodes
import yaml.parser
import yaml.reader
import yaml.resolver
import yaml.scanner

from pgo.secrets import gonum, goyaml
from pgo.secrets.sops import Document, Malformed
from pgo.secrets.tree import Branch, Comment, Item, Timestamp, Value, seq, shown

MAX_VALUES = 200_000  # values built, aliases expanded: a bound on alias bombs
MAX_DEPTH = 256

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
    nodes = []
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # (it checks every character first)
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
        if loader is not None:
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
                    raise Malformed(f"the key {shown('/'.join(path + [key]))} is there twice")
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
    raise Malformed(f"a value in it is tagged {shown(tag)} but is not one")


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
    style = goyaml.select_style(style, goyaml.analyze(s), flow=False, simple_key=False)
    if style == "literal" and s and goyaml.is_break(s[0]):
        # Node.Encode writes the value and parses it back; its literal writer ends the
        # `|` line with the value's first line break, so that break is lost (sops prints
        # "\nabc" as abc). The node keeps the literal style.
        s = s[2:] if s.startswith("\r\n") else s[1:]
    # go-yaml's parser tags a plain `<<` !!merge, and its encoder then writes the tag
    return _Node("scalar", s, style, "!!merge" if style == "plain" and s == "<<" else "")


def emit(branches: list[Branch]) -> bytes:
    """sops' YAML EmitPlainFile: each branch a document, through go-yaml's encoder."""
    em = goyaml.Emitter()
    events: list[goyaml.Event] = [goyaml.Event("stream-start")]
    for branch in branches:
        events.append(goyaml.Event("doc-start"))
        _events(_tree_node(branch), "", events)
        events.append(goyaml.Event("doc-end"))
    events.append(goyaml.Event("stream-end"))
    em.run(events)
    return "".join(em.out).encode("utf-8", "surrogateescape")


def _events(node: _Node, tail: str, out: list[goyaml.Event]) -> None:
    """go-yaml's encoder.node for the nodes sops builds (no anchors, no flow styles)."""
    if node.kind == "map":
        out.append(goyaml.Event("map-start", head=node.head, tail=tail))
        t = ""
        for i in range(0, len(node.content), 2):
            k, v = node.content[i], node.content[i + 1]
            foot = k.foot
            if foot:
                k = _Node(k.kind, k.value, k.style, k.tag, k.content, k.head, k.line, "")
            _events(k, t, out)
            t = foot
            _events(v, "", out)
        out.append(goyaml.Event("map-end", tail=t, line=node.line, foot=node.foot))
    elif node.kind == "seq":
        out.append(goyaml.Event("seq-start", head=node.head))
        for child in node.content:
            _events(child, "", out)
        out.append(goyaml.Event("seq-end", line=node.line, foot=node.foot))
    else:
        out.append(goyaml.Event("scalar", node.value, node.style, node.tag, node.head, node.line,
                          node.foot, tail))
