"""go-yaml v3's emitter (emitterc.go), ported function by function for what sops writes.

sops prints YAML through go-yaml v3 with an indent of 4 and no line width; to print byte for
byte the same, the events `yamlfmt` makes from a tree are written by this port: the state
machine, indentation, the choice of scalar style (plain, single- or double-quoted, literal),
the writers of each style, and head, line, foot and tail comments. Left out, as sops' nodes
never need them: anchors and aliases, folded scalars, flow styles other than the empty
`{}` and `[]`, tags other than a scalar's `!!binary` and `!!merge`, line folding (the width
is unlimited), directives, and canonical output.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgo.secrets.sops import Malformed

BEST_INDENT = 4  # sops' YAML indent


@dataclass
class Event:
    kind: str  # stream-start/end, doc-start/end, map-start/end, seq-start/end, scalar
    value: str = ""
    style: str = "plain"
    tag: str = ""
    head: str = ""
    line: str = ""
    foot: str = ""
    tail: str = ""


def _printable(c: str) -> bool:
    o = ord(c)
    return (o == 0x0A or 0x20 <= o <= 0x7E or 0xA0 <= o <= 0xD7FF
            or (0xE000 <= o <= 0xFFFD and o != 0xFEFF))


def is_break(c: str) -> bool:
    return c in "\r\n\x85\u2028\u2029"


@dataclass
class Analysis:
    multiline: bool = False
    flow_plain: bool = True
    block_plain: bool = True
    single: bool = True
    block: bool = True


def analyze(value: str) -> Analysis:
    """yaml_emitter_analyze_scalar (the emitter writes Unicode)."""
    if not value:
        return Analysis(False, False, True, True, False)
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
        elif is_break(c):
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
        preceded_by_ws = c in " \t\0" or is_break(c)
    a = Analysis(multiline=line_breaks)
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


def select_style(style: str, a: Analysis, *, flow: bool, simple_key: bool,
                 value: str | None = None) -> str:
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


class Emitter:
    """go-yaml v3's emitter, for the events `_events` makes (best_indent 4, unlimited
    width, Unicode, LF line breaks)."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.events: list[Event] = []
        self.head_i = 0
        self.states: list[str] = []
        self.state = "stream-start"
        self.indents: list[int] = []
        self.indent = -1
        self.flow_level = 0
        self.root_context = False
        self.simple_key_context = False
        self.line = self.column = 0
        self.whitespace = self.indention = self.open_ended = False
        self.foot_indent = -1
        self.head_comment = self.line_comment = self.foot_comment = self.tail_comment = ""
        self.key_line_comment = ""
        self.scalar = ""
        self.analysis = Analysis()
        self.scalar_style = "plain"
        self.tag_handle = self.tag_suffix = ""

    # output primitives
    def put(self, s: str) -> None:
        self.out.append(s)
        self.column += 1

    def put_break(self) -> None:
        self.out.append("\n")
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
        self.foot_indent = -1

    def write_comment(self, comment: str) -> None:
        breaks = pound = False
        i = 0
        while i < len(comment):
            c = comment[i]
            if is_break(c):
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
    def run(self, events: list[Event]) -> None:
        self.events = events
        while self.head_i < len(events):
            ev = events[self.head_i]
            self.analyze_event(ev)
            getattr(self, "st_" + self.state.replace("-", "_"))(ev)
            self.head_i += 1

    def analyze_event(self, ev: Event) -> None:
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
            self.analysis = analyze(ev.value)

    def next_event(self, offset: int = 1) -> Event | None:
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

    def st_stream_start(self, ev: Event) -> None:
        self.indent = -1
        self.line = self.column = 0
        self.whitespace = self.indention = True
        self.foot_indent = -1
        self.state = "first-document-start"

    def st_first_document_start(self, ev: Event) -> None:
        self.document_start(ev, True)

    def st_document_start(self, ev: Event) -> None:
        self.document_start(ev, False)

    def document_start(self, ev: Event, first: bool) -> None:
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

    def st_document_content(self, ev: Event) -> None:
        self.states.append("document-end")
        self.process_head_comment()
        self.emit_node(ev, root=True)
        self.process_line_comment()
        self.process_foot_comment()

    def st_document_end(self, ev: Event) -> None:
        self.foot_indent = 0
        self.process_foot_comment()
        self.foot_indent = -1
        self.write_indent()
        self.state = "document-start"

    def trailing_comments(self) -> bool:
        return bool(self.line_comment or self.foot_comment or self.tail_comment)

    def flow_sequence_item(self, ev: Event, first: bool, trail: bool) -> None:
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
        self.emit_node(ev)
        if self.trailing_comments():
            self.write_indicator(",", False, False, False)
        self.process_line_comment()
        self.process_foot_comment()

    def st_flow_sequence_first_item(self, ev: Event) -> None:
        self.flow_sequence_item(ev, True, False)

    def st_flow_sequence_item(self, ev: Event) -> None:
        self.flow_sequence_item(ev, False, False)

    def st_flow_sequence_trail_item(self, ev: Event) -> None:
        self.flow_sequence_item(ev, False, True)

    def flow_mapping_key(self, ev: Event, first: bool, trail: bool) -> None:
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
            self.emit_node(ev, simple_key=True)
            return
        self.write_indicator("?", True, False, False)
        self.states.append("flow-mapping-value")
        self.emit_node(ev)

    def st_flow_mapping_first_key(self, ev: Event) -> None:
        self.flow_mapping_key(ev, True, False)

    def st_flow_mapping_key(self, ev: Event) -> None:
        self.flow_mapping_key(ev, False, False)

    def st_flow_mapping_trail_key(self, ev: Event) -> None:
        self.flow_mapping_key(ev, False, True)

    def flow_mapping_value(self, ev: Event, simple: bool) -> None:
        if simple:
            self.write_indicator(":", False, False, False)
        else:
            self.write_indicator(":", True, False, False)
        self.states.append("flow-mapping-trail-key" if self.trailing_comments()
                           else "flow-mapping-key")
        self.emit_node(ev)
        if self.trailing_comments():
            self.write_indicator(",", False, False, False)
        self.process_line_comment()
        self.process_foot_comment()

    def st_flow_mapping_simple_value(self, ev: Event) -> None:
        self.flow_mapping_value(ev, True)

    def st_flow_mapping_value(self, ev: Event) -> None:
        self.flow_mapping_value(ev, False)

    def block_sequence_item(self, ev: Event, first: bool) -> None:
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
        self.emit_node(ev)
        self.process_line_comment()
        self.process_foot_comment()

    def st_block_sequence_first_item(self, ev: Event) -> None:
        self.block_sequence_item(ev, True)

    def st_block_seq_item(self, ev: Event) -> None:
        self.block_sequence_item(ev, False)

    def block_mapping_key(self, ev: Event, first: bool) -> None:
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
            self.emit_node(ev, simple_key=True)
            return
        self.write_indicator("?", True, False, True)
        self.states.append("block-mapping-value")
        self.emit_node(ev)

    def st_block_mapping_first_key(self, ev: Event) -> None:
        self.block_mapping_key(ev, True)

    def st_block_mapping_key(self, ev: Event) -> None:
        self.block_mapping_key(ev, False)

    def block_mapping_value(self, ev: Event, simple: bool) -> None:
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
        self.emit_node(ev)
        self.process_line_comment()
        self.process_foot_comment()

    def st_block_mapping_simple_value(self, ev: Event) -> None:
        self.block_mapping_value(ev, True)

    def st_block_mapping_value(self, ev: Event) -> None:
        self.block_mapping_value(ev, False)

    def emit_node(self, ev: Event, *, root: bool = False, simple_key: bool = False) -> None:
        """yaml_emitter_emit_node (its sequence and mapping contexts are read nowhere)."""
        self.root_context = root
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

    def check_simple_key(self, ev: Event) -> bool:
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

    def emit_scalar(self, ev: Event) -> None:
        self.scalar_style = select_style(ev.style, self.analysis, flow=self.flow_level > 0,
                                         simple_key=self.simple_key_context, value=ev.value)
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
            elif is_break(c):
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
            elif is_break(c):
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
            if not _printable(c) or bom or is_break(c) or c in '"\\':
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
        if value[:1] == " " or (value and is_break(value[0])):
            self.write_indicator(str(BEST_INDENT), False, False, False)
        self.open_ended = False
        chomp = ""
        if not value or not is_break(value[-1]):
            chomp = "-"
        elif len(value) == 1:
            chomp = "+"
            self.open_ended = True
        elif is_break(value[-2]):
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
            if is_break(c):
                self.write_break(c)
                breaks = True
            else:
                if breaks:
                    self.write_indent()
                self.write(c)
                self.indention = False
                breaks = False
