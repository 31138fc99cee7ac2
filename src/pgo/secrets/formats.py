"""sops' JSON, binary, dotenv and INI stores: a file to the tree and back, and the metadata.

Each reads an encrypted file as sops' store reads it (getsops/sops stores/*/store.go) and
writes the decrypted tree as sops' `EmitPlainFile` does, byte for byte: JSON through Go's
encoding/json and json.Indent (a tab), dotenv as KEY=VALUE lines, binary as the `data` value
itself; INI is `ini`'s. The metadata comes out as sops' ExtractMetadata takes it out: a
`sops` map, `sops_` keys flattened (dotenv), a `[sops]` section flattened (INI).
"""

from __future__ import annotations

import json
import re

from pgo.secrets import gonum, ini, sops
from pgo.secrets.sops import Document, Malformed
from pgo.secrets.tree import Branch, Comment, Item, Value, seq, shown, val_to_string

SOPS_KEY = "sops"
SOPS_PREFIX = "sops_"


def load(fmt: str, data: bytes) -> Document:
    if fmt in ("json", "binary"):
        return _extract_nested(_load_json(data))
    if fmt == "dotenv":
        return _extract_flat(_load_dotenv(data))
    if fmt == "ini":
        return _extract_sections(ini.load(data))
    raise ValueError(fmt)


def has_metadata(fmt: str, data: bytes) -> bool:
    meta = load(fmt, data).metadata
    return meta is not None and any(i.key == "mac" for i in meta)


def emit(fmt: str, branches: list[Branch]) -> bytes:
    if fmt == "json":
        return _emit_json(branches[0]).encode("utf-8", "surrogateescape") + b"\n"
    if fmt == "binary":
        for item in branches[0]:
            if item.key == "data":
                if isinstance(item.value, str):
                    return item.value.encode("utf-8", "surrogateescape")
                raise Malformed("its data value is not text")
        raise Malformed("it has no data value (a binary SOPS document has one)")
    if fmt == "dotenv":
        return _emit_dotenv(branches[0]).encode("utf-8", "surrogateescape")
    if fmt == "ini":
        return ini.emit(branches).encode("utf-8", "surrogateescape")
    raise ValueError(fmt)


# -- metadata -------------------------------------------------------------------------------

def _extract_nested(branches: list[Branch]) -> Document:
    """stores.ExtractMetadata with MetadataFlattenNone: a top-level `sops` map."""
    meta: Branch | None = None
    for bi, branch in enumerate(branches):
        kept = Branch()
        for item in branch:
            if item.key == SOPS_KEY:
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


def _extract_flat(branches: list[Branch]) -> Document:
    """MetadataFlattenFull (dotenv): `sops_`-prefixed keys, flattened."""
    flat = Branch()
    kept = Branch()
    for item in branches[0]:
        if isinstance(item.key, str) and item.key.startswith(SOPS_PREFIX):
            flat.append(Item(item.key[len(SOPS_PREFIX):], item.value))
        else:
            kept.append(item)
    branches[0] = kept
    return Document(branches, unflatten(flat) if flat else None)


def _extract_sections(branches: list[Branch]) -> Document:
    """MetadataFlattenBelowTop (INI): a `[sops]` section of flattened keys, `\\n` escaped."""
    doc = _extract_nested(branches)
    if doc.metadata is None:
        return doc
    flat = Branch(Item(i.key, i.value.replace("\\n", "\n") if isinstance(i.value, str)
                       else i.value) for i in doc.metadata)
    return Document(doc.branches, unflatten(flat))


MAP_SEP, LIST_SEP = "__map_", "__list_"


def unflatten(flat: Branch) -> Branch:
    """stores.unflattenTreeBranch: `age__list_0__map_enc` keys back into a tree."""
    root: dict[str, object] = {}

    def tokens(path: str) -> list[str | int]:
        out: list[str | int] = []
        parts = re.split(f"({MAP_SEP}|{LIST_SEP})", path)
        out.append(parts[0])
        for sep, tok in zip(parts[1::2], parts[2::2], strict=True):
            if sep == LIST_SEP:
                if not re.fullmatch("[0-9]+", tok):
                    raise Malformed("its sops metadata has a bad list index")
                out.append(int(tok))
            else:
                out.append(tok)
        return out

    for item in flat:
        if isinstance(item.key, Comment):
            continue
        node: dict[object, object] = root  # type: ignore[assignment]
        toks = tokens(item.key)
        for tok in toks[:-1]:
            nxt = node.setdefault(tok, {})
            if not isinstance(nxt, dict):
                raise Malformed("its sops metadata mixes a value and a map")
            node = nxt
        if toks[-1] in node:
            raise Malformed("its sops metadata has a duplicate entry")
        node[toks[-1]] = ("leaf", item.value)

    def convert(node: object) -> Value:
        if isinstance(node, tuple):
            return node[1]  # type: ignore[no-any-return]
        assert isinstance(node, dict)
        if node and all(isinstance(k, int) for k in node):
            if sorted(node) != list(range(len(node))):
                raise Malformed("its sops metadata has an incomplete list")
            return [convert(node[i]) for i in range(len(node))]
        if any(isinstance(k, int) for k in node):
            raise Malformed("its sops metadata mixes a list and a map")
        return Branch(Item(k, convert(node[k])) for k in sorted(node))

    out = convert(root)
    assert isinstance(out, Branch)
    return out


# -- JSON -----------------------------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")


def _load_json(data: bytes) -> list[Branch]:
    """The first JSON value of `data` (Go's json.Decoder reads no further), an object, with
    keys in file order, duplicates kept; numbers int when they fit int64, else float."""
    text = data.decode("utf-8", "replace").lstrip(" \t\r\n")

    def number(s: str) -> int | float:
        if re.fullmatch(r"-?[0-9]+", s):
            v = int(s)
            if v in gonum.INT64:
                return v
        f = float(s)
        if f in (float("inf"), float("-inf")):
            raise Malformed("a number in it is out of range")
        return f

    def pairs(items: list[tuple[str, Value]]) -> Branch:
        return Branch(Item(_fix(k), v) for k, v in items)

    decoder = json.JSONDecoder(object_pairs_hook=pairs, parse_int=number,
                               parse_float=number, parse_constant=_no_constant)
    try:
        value, _ = decoder.raw_decode(text)
    except (ValueError, RecursionError) as e:
        if isinstance(e, Malformed):
            raise
        raise Malformed(f"not valid JSON: {_json_reason(e)}") from None
    if not isinstance(value, Branch):
        raise Malformed("its JSON is not an object")
    sops.check_depth([value])
    _fix_strings(value)
    return [value]


def _no_constant(name: str) -> None:
    raise Malformed(f"not valid JSON: {name} is not JSON")


def _json_reason(e: BaseException) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} at line {e.lineno}, column {e.colno}"
    return "nested too deeply"


def _fix(s: str) -> str:
    """A lone surrogate from a \\uD800 escape is U+FFFD, as Go decodes it."""
    return _SURROGATE.sub("\ufffd", s) if _SURROGATE.search(s) else s


def _fix_strings(value: Value) -> None:
    if isinstance(value, Branch):
        for item in value:
            if isinstance(item.value, str):
                item.value = _fix(item.value)
            else:
                _fix_strings(item.value)
    elif (items := seq(value)) is not None:
        for i, v in enumerate(items):
            if isinstance(v, str):
                items[i] = _fix(v)
            else:
                _fix_strings(v)


_HEX = "0123456789abcdef"
_JSON_ESC = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
             "\t": "\\t", "<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
             "\u2028": "\\u2028", "\u2029": "\\u2029"}


def json_string(s: str) -> str:
    """encoding/json's text of a string (HTML-safe, as json.Marshal escapes it)."""
    out = ['"']
    for c in s:
        o = ord(c)
        if c in _JSON_ESC:
            out.append(_JSON_ESC[c])
        elif o < 0x20:
            out.append("\\u00" + _HEX[o >> 4] + _HEX[o & 0xF])
        elif 0xD800 <= o <= 0xDFFF:  # a byte that is not UTF-8 (surrogate escape)
            out.append("\\ufffd")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _json_scalar(v: Value) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        try:
            return gonum.json_float(v)
        except ValueError:
            raise Malformed("a value in it is not a JSON number (NaN or infinity)") from None
    if isinstance(v, str):
        return json_string(v)
    raise Malformed("a value in it can not be written as JSON")


def _emit_json(value: Value, depth: int = 0) -> str:
    """sops' encodeTree/encodeArray, then json.Indent(..., "", "\\t")."""
    pad = "\t" * (depth + 1)
    if isinstance(value, Branch):
        entries = [i for i in value if not isinstance(i.key, Comment)]
        if not entries:
            return "{}"
        body = ",\n".join(f"{pad}{json_string(str(i.key))}: {_emit_json(i.value, depth + 1)}"
                          for i in entries)
        return "{\n" + body + "\n" + "\t" * depth + "}"
    items = seq(value)
    if items is not None:
        vals = [v for v in items if not isinstance(v, Comment)]
        if not vals:
            return "[]"
        return ("[\n" + ",\n".join(pad + _emit_json(v, depth + 1) for v in vals) + "\n"
                + "\t" * depth + "]")
    return _json_scalar(value)


# -- dotenv ---------------------------------------------------------------------------------

def _load_dotenv(data: bytes) -> list[Branch]:
    branch = Branch()
    text = data.decode("utf-8", "surrogateescape")
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        if line.startswith("#"):
            branch.append(Item(Comment(line[1:]), None))
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise Malformed(f"line {n} is not KEY=VALUE")
        branch.append(Item(key, value.replace("\\n", "\n")))
    return [branch]


def _emit_dotenv(branch: Branch) -> str:
    out = []
    for item in branch:
        if isinstance(item.key, Comment):
            out.append(f"#{item.key.value}\n")
            continue
        if isinstance(item.value, list):
            raise Malformed(f"{shown(item.key)} holds a list or a map, which dotenv can not")
        value = item.value
        text = value.replace("\n", "\\n") if isinstance(value, str) else val_to_string(value)
        out.append(f"{item.key}={text}\n")
    return "".join(out)
