"""One SOPS document: is it one, and its plaintext, exactly as `sops decrypt` writes it.

    sniff(data, name)          cheap: could this file be a SOPS document (no parsing)
    decrypt(data, name, ids)   -> Plaintext(content, secrets), or SecretError

The format follows the file name as sops' does (`.yaml`/`.yml`, `.json`, `.env`, `.ini`,
anything else its binary format: a JSON document whose `data` value is the whole file); a
document is a SOPS document when its metadata (a `sops` map with a `mac`; `sops_mac=` in a
dotenv file; a `[sops]` section with a `mac` key in an INI file) is there.

Decrypting follows sops (getsops/sops, sops.go and aes/cipher.go): the 32-byte data key is
age-encrypted for each recipient (`sops.age[].enc`, or one `key_groups` entry); every value
is `ENC[AES256_GCM,data:B64,iv:B64,tag:B64,type:T]`, AES-256-GCM with the path of its keys
(`a:b:`) as additional data; the MAC is SHA-512 over the plaintext of every value in file
order (or only the encrypted ones with `mac_only_encrypted`), its upper-case hex stored
encrypted like a value with `lastmodified` as additional data. Comments are encrypted like
values (path of their mapping) and are not in the MAC; one that does not decrypt is kept as
it is, as sops keeps it.

Which values are encrypted: `unencrypted_suffix` (the default `_unencrypted`) and
`encrypted_suffix` are applied as sops applies them. The regular-expression rules
(`encrypted_regex` and the like) are not evaluated: a regular expression written by a team
would run in pgod, where Python's backtracking engine can be made to take forever (sops'
RE2 can not); under those rules a value is taken as encrypted when it has the `ENC[...]`
form, which is what sops wrote for every value a rule chose.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyrage
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pgo.secrets import gonum
from pgo.secrets.tree import Branch, Comment, Timestamp, Value, seq, shown, to_bytes

MAX_SIZE = 1 << 20  # bytes: a SOPS document larger than this is refused

# sha256("sops"): the MAC's first bytes under mac_only_encrypted (sops.go)
MAC_ONLY_ENCRYPTED_INIT = bytes.fromhex(
    "8a3fd2ad54ce66527b1034f3d147be0b0b975b3bf44f72c6fdadec8176f27d69")
DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"
ENC_RE = re.compile(
    r"^ENC\[AES256_GCM,data:([A-Za-z0-9+/=]+),iv:([A-Za-z0-9+/=]+),tag:([A-Za-z0-9+/=]+),"
    r"type:([a-z]+)\]$")
RULE_KEYS = ("unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex",
             "unencrypted_comment_regex", "encrypted_comment_regex")
MAX_RECIPIENTS = 64  # age entries tried per document
MAX_DEPTH = 200  # levels of maps and lists


class Malformed(Exception):
    """The document can not be read as a SOPS document of its format (message: why, never
    a value). Turned into a SecretError naming the file by `decrypt`."""


class Refused(Exception):
    """A well-formed document that can not be decrypted (message: why, never a value)."""


@dataclass(frozen=True)
class Plaintext:
    content: bytes  # the decrypted file, as sops writes it
    secrets: tuple[str, ...] = field(repr=False)  # decrypted values, for redaction


def format_for(name: str) -> str:
    """sops' formats.FormatForPath: the format a file's name implies."""
    if name.endswith((".yaml", ".yml")):
        return "yaml"
    if name.endswith(".json"):
        return "json"
    if name.endswith(".env"):
        return "dotenv"
    if name.endswith(".ini"):
        return "ini"
    return "binary"


def sniff(data: bytes, name: str) -> bool:
    """Whether `data` may be a SOPS document of the format `name` implies: a byte search
    for its metadata, no parsing (most files of a checkout stop here)."""
    fmt = format_for(name)
    if fmt == "dotenv":
        return data.startswith(b"sops_mac=") or b"\nsops_mac=" in data
    if fmt == "ini":
        return b"mac" in data and _INI_SOPS.search(data) is not None
    if fmt == "yaml":
        return b"mac:" in data and _YAML_SOPS.search(data) is not None
    return b'"sops"' in data and b'"mac"' in data  # json, binary


_YAML_SOPS = re.compile(rb"(?m)^(?:sops|'sops'|\"sops\")[ \t]*:")
_INI_SOPS = re.compile(rb"(?m)^[ \t]*\[sops\]")


def decrypt(data: bytes, name: str, identities: Sequence[pyrage.x25519.Identity]) -> Plaintext:
    """The plaintext of SOPS document `data` named `name`, or Malformed / Refused. Call only
    when `is_document` said yes (or to learn why a sniffed file is not one)."""
    from pgo.secrets import formats, yamlfmt

    fmt = format_for(name)
    if len(data) > MAX_SIZE:
        raise Malformed(f"larger than {MAX_SIZE >> 20} MiB")
    if fmt == "yaml":
        doc = yamlfmt.load(data)
    else:
        doc = formats.load(fmt, data)
    if doc.metadata is None:
        raise Malformed("no sops metadata in it")
    check_depth(doc.branches)
    meta = Metadata.parse(doc.metadata)
    key = data_key(meta, identities)
    secrets: list[str] = []
    computed = decrypt_tree(doc.branches, key, meta, secrets)
    stored = decrypt_mac(meta, key)
    if not hmac.compare_digest(stored.encode(), computed.encode()):
        raise Refused("MAC mismatch: the file was changed after it was encrypted")
    if fmt == "yaml":
        content = yamlfmt.emit(doc.branches)
    else:
        content = formats.emit(fmt, doc.branches)
    return Plaintext(content=content, secrets=redactable(secrets))


def is_document(data: bytes, name: str) -> bool:
    """Whether `data` is a SOPS document of the format `name` implies (parsed: a sniffed
    file that does not parse, or has no metadata, is not one)."""
    from pgo.secrets import formats, yamlfmt

    if not sniff(data, name):
        return False
    fmt = format_for(name)
    try:
        if fmt == "yaml":
            return yamlfmt.has_metadata(data)
        return formats.has_metadata(fmt, data)
    except Malformed:
        return False


@dataclass(frozen=True)
class Document:
    branches: list[Branch]  # the data, metadata taken out
    metadata: Branch | None  # the `sops` map (unflattened), None when there is none


# -- metadata -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metadata:
    age: tuple[tuple[str, str], ...]  # (recipient, armored age file of the data key)
    lastmodified: str  # RFC 3339, as Go formats it: the MAC's additional data
    mac: str
    unencrypted_suffix: str
    encrypted_suffix: str
    by_form: bool  # a regular-expression rule: a value is encrypted when it has the ENC form
    mac_only_encrypted: bool

    @classmethod
    def parse(cls, branch: Branch) -> Metadata:
        m = _as_dict(branch, "sops")
        groups = m.get("key_groups")
        age_list = m.get("age")
        if groups not in (None, []) and age_list in (None, []):
            group_list = seq(groups)
            if group_list is None:
                raise Malformed("sops.key_groups is not a list")
            if len(group_list) != 1:
                raise Refused("it is split over several key groups (Shamir secret sharing), "
                              "which pgod does not support")
            age_list = _as_dict(group_list[0], "sops.key_groups[0]").get("age")
        entries: list[tuple[str, str]] = []
        ages = seq(age_list) if age_list is not None else []
        if ages is None:
            raise Malformed("sops.age is not a list")
        for i, raw in enumerate(ages):
            e = _as_dict(raw, f"sops.age[{i}]")
            enc, rcpt = e.get("enc"), e.get("recipient", "")
            if not isinstance(enc, str) or not isinstance(rcpt, str):
                raise Malformed(f"sops.age[{i}] has no enc text")
            entries.append((rcpt, enc))
        if not entries:
            raise Refused("it is not encrypted for any age recipient (only age is supported)")
        if len(entries) > MAX_RECIPIENTS:
            raise Malformed(f"more than {MAX_RECIPIENTS} age recipients")
        lastmodified = m.get("lastmodified")
        if not isinstance(lastmodified, str):
            raise Malformed("sops.lastmodified is missing")
        mac = m.get("mac")
        if not isinstance(mac, str):
            raise Malformed("sops.mac is missing")
        rules = {k: m.get(k) or "" for k in RULE_KEYS}
        for k, v in rules.items():
            if not isinstance(v, str):
                raise Malformed(f"sops.{k} is not a string")
        if sum(1 for v in rules.values() if v) > 1:
            raise Malformed("more than one of " + ", ".join(RULE_KEYS) + " is set")
        if not any(rules.values()):
            rules["unencrypted_suffix"] = DEFAULT_UNENCRYPTED_SUFFIX
        only = m.get("mac_only_encrypted", False)
        if isinstance(only, str):  # dotenv and INI metadata are text (mapstructure, weakly)
            only = {"": False}.get(only, gonum.parse_bool(only))
        if not isinstance(only, bool):
            raise Malformed("sops.mac_only_encrypted is not a boolean")
        return cls(age=tuple(entries), lastmodified=rfc3339(lastmodified), mac=mac,
                   unencrypted_suffix=str(rules["unencrypted_suffix"]),
                   encrypted_suffix=str(rules["encrypted_suffix"]),
                   by_form=any(rules[k] for k in RULE_KEYS[2:]), mac_only_encrypted=only)

    def encrypted(self, path: Sequence[str], value: Value) -> bool:
        """sops' shouldBeEncrypted for the suffix rules; the ENC form for the others."""
        if self.by_form:
            return isinstance(value, str) and value.startswith("ENC[AES256_GCM,")
        if self.encrypted_suffix:
            return any(p.endswith(self.encrypted_suffix) for p in path)
        return not any(p.endswith(self.unencrypted_suffix) for p in path)


def _as_dict(value: Value, where: str) -> dict[str, Value]:
    if not isinstance(value, Branch):
        raise Malformed(f"{where} is not a map")
    out: dict[str, Value] = {}
    for item in value:
        if isinstance(item.key, str):
            out[item.key] = item.value
    return out


_RFC3339 = re.compile(r"^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]+)?"
                      r"(Z|[+-][0-9]{2}:[0-9]{2})$")


def rfc3339(text: str) -> str:
    """`lastmodified` as Go's time.Parse(RFC3339) then Format(RFC3339) gives it: no fraction,
    a zero offset as Z."""
    m = _RFC3339.match(text)
    if not m:
        raise Malformed("sops.lastmodified is not an RFC 3339 time")
    zone = "Z" if m.group(3) in ("Z", "+00:00", "-00:00") else m.group(3)
    return m.group(1) + zone


# -- keys and values ------------------------------------------------------------------------

def data_key(meta: Metadata, identities: Sequence[pyrage.x25519.Identity]) -> bytes:
    """The data key, from the first age entry one of `identities` opens."""
    for _, enc in meta.age:
        try:
            key: bytes = pyrage.decrypt(enc.encode("utf-8", "surrogateescape"),
                                        list(identities))
        except pyrage.DecryptError:
            continue
        if len(key) != 32:
            raise Malformed("its data key is not 32 bytes")
        return key
    mine = ", ".join(str(i.to_public()) for i in identities)
    theirs = ", ".join(sorted({r if _RECIPIENT.match(r) else "a recipient not named"
                               for r, _ in meta.age})) or "no named recipient"
    raise Refused(f"no identity of this service opens it: it is encrypted for {theirs}, "
                  f"this service's recipient is {mine}")


_RECIPIENT = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")


def decrypt_value(text: str, key: bytes, aad: str) -> Value:
    """aes.Cipher.Decrypt: one ENC[...] value (or "", which sops never encrypts)."""
    if text == "":
        return ""
    m = ENC_RE.match(text)
    if not m:
        raise ValueError("not in sops' ENC[AES256_GCM,...] form")
    try:
        data, iv, tag = (base64.b64decode(g, validate=True) for g in m.group(1, 2, 3))
    except binascii.Error:
        raise ValueError("bad base64") from None
    if not 8 <= len(iv) <= 128:
        raise ValueError("bad iv")
    try:
        plain = AESGCM(key).decrypt(iv, data + tag, aad.encode("utf-8", "surrogateescape"))
    except InvalidTag:
        raise ValueError("does not authenticate") from None
    kind = m.group(4)
    text = plain.decode("utf-8", "surrogateescape")
    if kind in ("str", "bytes"):
        return text
    if kind == "comment":
        return Comment(text)
    parsed: Value
    if kind == "int":
        parsed = gonum.parse_atoi(text)
    elif kind == "float":
        parsed = gonum.parse_float(text)
    elif kind == "bool":
        parsed = gonum.parse_bool(text)
    elif kind == "time":
        ts = gonum.yaml_timestamp(text)
        parsed = Timestamp(ts) if ts and ("T" in text or "t" in text) else None
    else:
        raise ValueError(f"unknown type {kind!r}")
    if parsed is None:
        raise ValueError(f"not a valid {kind}")
    return parsed


def decrypt_mac(meta: Metadata, key: bytes) -> str:
    try:
        mac = decrypt_value(meta.mac, key, meta.lastmodified)
    except ValueError:
        raise Refused("MAC mismatch: its MAC does not decrypt (tampered, or lastmodified "
                      "changed)") from None
    if not isinstance(mac, str) or not mac:
        raise Refused("MAC mismatch: it has no MAC")
    return mac


def _aad(path: Sequence[str]) -> str:
    return ":".join(path) + ":"


def decrypt_tree(branches: list[Branch], key: bytes, meta: Metadata,
                 secrets: list[str]) -> str:
    """Decrypt every value and comment in place (sops' Tree.Decrypt) and return the MAC of
    the plaintext; every decrypted value is appended to `secrets`."""
    h = hashlib.sha512()
    if meta.mac_only_encrypted:
        h.update(MAC_ONLY_ENCRYPTED_INIT)

    def comment(c: Comment, path: list[str]) -> Comment:
        if not meta.encrypted(path, c.value):
            return c
        try:
            plain = decrypt_value(c.value, key, _aad(path))
        except ValueError:
            return c  # sops: "possibly unencrypted comment", kept as it is
        if isinstance(plain, Comment):  # sops' Cipher.Decrypt: not inline any more
            return plain
        if isinstance(plain, str) and not isinstance(plain, Timestamp):
            return Comment(plain, c.inline)
        raise Malformed("a comment decrypts to a value that is not text")

    def leaf(value: Value, path: list[str], in_list: bool) -> Value:
        encrypted = meta.encrypted(path, value)
        if encrypted:
            if not isinstance(value, str):
                raise Malformed(f"the value at {_where(path)} should be encrypted and is not")
            try:
                value = decrypt_value(value, key, _aad(path))
            except ValueError as e:
                raise Refused(f"the value at {_where(path)} does not decrypt ({e}): tampered, "
                              "or encrypted with another data key") from None
            if isinstance(value, Comment):
                # sops writes a comment in a list as an item ENC[...,type:comment]; it is a
                # comment again once decrypted, and not in the MAC (sops <= 3.13.1 and
                # >= 3.13.3; getsops/sops#2243)
                if in_list:
                    return value
                raise Malformed(f"the value at {_where(path)} decrypts to a comment")
            if not isinstance(value, bool):
                secrets.append(_scalar_bytes(value, path).decode("utf-8", "surrogateescape"))
        if not meta.mac_only_encrypted or encrypted:
            h.update(_scalar_bytes(value, path))
        return value

    def walk(value: Value, path: list[str], in_list: bool = False) -> Value:
        if isinstance(value, Branch):
            branch(value, path)
            return value
        items = seq(value)
        if items is not None:
            for i, v in enumerate(items):
                items[i] = comment(v, path) if isinstance(v, Comment) else walk(v, path, True)
            return items
        if value is None:
            return None
        return leaf(value, path, in_list)

    def branch(items: Branch, path: list[str]) -> None:
        for item in items:
            if isinstance(item.key, Comment):
                item.key = comment(item.key, path)
                continue
            item.value = walk(item.value, path + [item.key])

    for b in branches:
        branch(b, [])
    return h.hexdigest().upper()


def _scalar_bytes(value: Value, path: Sequence[str]) -> bytes:
    if isinstance(value, (list, Comment)) or value is None:
        raise Malformed(f"the value at {_where(path)} is not a scalar")
    return to_bytes(value)


def check_depth(branches: list[Branch]) -> None:
    """Refuse a tree nested deeper than MAX_DEPTH (the walks below recurse)."""
    stack: list[tuple[Value, int]] = [(b, 1) for b in branches]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Malformed(f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, Branch):
            stack += [(i.value, depth + 1) for i in value]
        elif (items := seq(value)) is not None:
            stack += [(v, depth + 1) for v in items]


def _where(path: Sequence[str]) -> str:
    return shown("/".join(path)) or "the top"


def redactable(values: Sequence[str]) -> tuple[str, ...]:
    """The decrypted values worth redacting, longest first: each value, and each line of a
    multi-line one. Shorter than 4 characters is left out: redacting `1` or `yes` would blot
    out every number and word of a log line and hide nothing worth hiding."""
    out: set[str] = set()
    for v in values:
        for part in (v, *v.splitlines()):
            part = part.strip()
            if len(part) >= 4:
                out.add(part)
    return tuple(sorted(out, key=lambda s: (-len(s), s)))
