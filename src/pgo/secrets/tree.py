"""sops' in-memory document: an ordered tree of keys, values and comments.

    Branch   a mapping: a list of Items, in file order; a key is a str or a Comment
    list     a sequence: values and Comments, in file order
    leaves   str, int, float, bool, None, Timestamp (RFC 3339 text), Comment

It is sops' own model (`sops.TreeBranch`), so the walk that decrypts it and the MAC over it
follow sops' code step for step. Strings that came from bytes that are not UTF-8 hold those
bytes as surrogate escapes (`to_bytes` gives them back), as Go strings hold any bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union, cast

from pgo.secrets import gonum


@dataclass(frozen=True)
class Comment:
    value: str  # the text after the comment character
    inline: bool = False  # YAML: a comment on the line of a value (`key: value # here`)


class Timestamp(str):
    """A YAML timestamp, held as Go's RFC 3339 text of it (what sops MACs and writes)."""


@dataclass
class Item:
    key: str | Comment
    value: Value


class Branch(list[Item]):
    """A mapping, in file order (a plain list is a sequence)."""


Value = Union[str, int, float, bool, None, Timestamp, Comment, "list[Value]", Branch]


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def shown(text: str, limit: int = 80) -> str:
    """File content (a key, a path) fit for a one-line message: control characters and
    bytes that are not UTF-8 escaped, at most `limit` characters."""
    out = _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()) & 0xFF:02x}", text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def seq(value: object) -> list[Value] | None:
    """The items of `value` when it is a sequence (a list that is not a Branch)."""
    if isinstance(value, list) and not isinstance(value, Branch):
        return cast("list[Value]", value)
    return None


def to_bytes(value: str | int | float | bool | Timestamp) -> bytes:
    """sops.ToBytes: the bytes of a plaintext value that go into the MAC."""
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return gonum.format_float(value, "f").encode()
    return value.encode("utf-8", "surrogateescape")


def val_to_string(value: Value) -> str:
    """sops' stores.ValToString: a scalar as the dotenv and INI stores write it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return gonum.val_to_string_float(value)
    if isinstance(value, int):
        return str(value)
    if value is None:
        return "<nil>"
    if isinstance(value, Comment):
        return value.value
    if isinstance(value, str):
        return value
    raise TypeError("not a scalar")
