"""A test-only SOPS encryptor: a plaintext file to the document sops would write.

It follows sops' Tree.Encrypt (sops.go): every value not left out by the rules is AES-256-GCM
encrypted (cryptography) with its key path as additional data, the MAC is SHA-512 over the
plaintext values in order, stored encrypted with `lastmodified` as additional data, and the
32-byte data key is wrapped for each recipient by the real `age` command (`age -a -r`). The
tree is read and written with pgo's own stores.

Deterministic when asked: `ivs` maps a value's additional data to its IV (the interop test
re-encrypts sops' own file with sops' data key and IVs and must get it back byte for byte),
and `layout="3.9"` writes the metadata as sops 3.9 does (every key source, empty ones too).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pgo.secrets import formats, gonum, sops, yamlfmt
from pgo.secrets.tree import Branch, Comment, Item, Timestamp, Value, seq, to_bytes


def wrap(data_key: bytes, recipient: str) -> str:
    """The data key, age-encrypted (ASCII armor) for `recipient` by the age command."""
    out = subprocess.run(["age", "-a", "-r", recipient], input=data_key, check=True,
                         capture_output=True)
    return out.stdout.decode()


def encrypt_value(value: Value, key: bytes, aad: str, iv: bytes | None = None) -> str:
    """aes.Cipher.Encrypt."""
    if value == "":
        return ""
    if isinstance(value, Comment):
        kind, plain = "comment", value.value.encode("utf-8", "surrogateescape")
    elif isinstance(value, Timestamp):
        kind, plain = "time", str(value).encode()
    elif isinstance(value, bool):
        kind, plain = "bool", b"True" if value else b"False"
    elif isinstance(value, int):
        kind, plain = "int", str(value).encode()
    elif isinstance(value, float):
        kind, plain = "float", gonum.format_float(value, "f").encode()
    elif isinstance(value, str):
        kind, plain = "str", value.encode("utf-8", "surrogateescape")
    else:
        raise TypeError(f"can not encrypt {type(value).__name__}")
    iv = iv if iv is not None else os.urandom(32)
    out = AESGCM(key).encrypt(iv, plain, aad.encode("utf-8", "surrogateescape"))
    b64 = base64.b64encode
    return (f"ENC[AES256_GCM,data:{b64(out[:-16]).decode()},iv:{b64(iv).decode()},"
            f"tag:{b64(out[-16:]).decode()},type:{kind}]")


class Rules:
    def __init__(self, unencrypted_suffix: str = "", encrypted_suffix: str = "",
                 encrypted_regex: str = "", unencrypted_regex: str = "") -> None:
        self.unencrypted_suffix = unencrypted_suffix
        self.encrypted_suffix = encrypted_suffix
        self.encrypted_regex = encrypted_regex
        self.unencrypted_regex = unencrypted_regex
        if not (unencrypted_suffix or encrypted_suffix or encrypted_regex or unencrypted_regex):
            self.unencrypted_suffix = "_unencrypted"

    def encrypted(self, path: Sequence[str]) -> bool:
        """sops' shouldBeEncrypted (the regular expressions are the test's own)."""
        enc = True
        if self.unencrypted_suffix and any(p.endswith(self.unencrypted_suffix) for p in path):
            enc = False
        if self.encrypted_suffix:
            enc = any(p.endswith(self.encrypted_suffix) for p in path)
        if self.unencrypted_regex and any(re.search(self.unencrypted_regex, p) for p in path):
            enc = False
        if self.encrypted_regex:
            enc = any(re.search(self.encrypted_regex, p) for p in path)
        return enc

    def metadata(self) -> dict[str, str]:
        return {k: v for k, v in (("encrypted_regex", self.encrypted_regex),
                                  ("encrypted_suffix", self.encrypted_suffix),
                                  ("unencrypted_regex", self.unencrypted_regex),
                                  ("unencrypted_suffix", self.unencrypted_suffix)) if v}


def encrypt_tree(branches: list[Branch], key: bytes, rules: Rules, mac_only: bool,
                 ivs: Mapping[str, bytes] | None = None) -> str:
    """sops' Tree.Encrypt, in place; returns the MAC (upper-case hex)."""
    h = hashlib.sha512()
    if mac_only:
        h.update(sops.MAC_ONLY_ENCRYPTED_INIT)

    def iv(aad: str) -> bytes | None:
        return ivs.get(aad) if ivs else None

    def leaf(value: Value, path: list[str]) -> Value:
        aad = ":".join(path) + ":"
        enc = rules.encrypted(path)
        if not isinstance(value, Comment) and (not mac_only or enc):
            assert value is not None and not isinstance(value, list)
            h.update(to_bytes(value))
        return encrypt_value(value, key, aad, iv(aad)) if enc else value

    def walk(value: Value, path: list[str]) -> Value:
        if isinstance(value, Branch):
            for item in value:
                if isinstance(item.key, Comment):
                    enc = leaf(item.key, path)
                    item.key = enc if isinstance(enc, Comment) else Comment(str(enc),
                                                                            item.key.inline)
                else:
                    item.value = walk(item.value, path + [item.key])
            return value
        items = seq(value)
        if items is not None:  # sops: a comment in a list becomes an ENC[...] item
            for i, v in enumerate(items):
                items[i] = leaf(v, path) if isinstance(v, Comment) else walk(v, path)
            return items
        return None if value is None else leaf(value, path)

    for b in branches:
        walk(b, [])
    return h.hexdigest().upper()


def load_plain(data: bytes, name: str) -> list[Branch]:
    fmt = sops.format_for(name)
    if fmt == "yaml":
        return yamlfmt.load(data).branches
    if fmt == "binary":
        return [Branch([Item("data", data.decode("utf-8", "surrogateescape"))])]
    return formats.load(fmt, data).branches


def metadata(ages: Sequence[tuple[str, str]], lastmodified: str, mac: str, rules: Rules,
             mac_only: bool, layout: str) -> Branch:
    if layout == "3.9":  # the struct order of sops 3.9, every key source listed
        age = [Branch([Item("recipient", r), Item("enc", e)]) for r, e in ages]
        items: list[tuple[str, Value]] = [
            ("kms", []), ("gcp_kms", []), ("azure_kv", []), ("hc_vault", []), ("age", age),
            ("lastmodified", lastmodified), ("mac", mac), ("pgp", [])]
        items += sorted(rules.metadata().items())
        items.append(("version", "3.9.0"))
        return Branch(Item(k, v) for k, v in items)
    fields: dict[str, Value] = {
        "age": [Branch([Item("enc", e), Item("recipient", r)]) for r, e in ages],
        "lastmodified": lastmodified, "mac": mac, "version": "3.13.2", **rules.metadata()}
    if mac_only:
        fields["mac_only_encrypted"] = True
    return Branch(Item(k, fields[k]) for k in sorted(fields))


def flatten(branch: Branch, prefix: str) -> Branch:
    """stores.flattenTreeBranch: nested metadata as `age__list_0__map_enc` keys."""
    out = Branch()

    def descend(value: Value, key: str) -> None:
        if isinstance(value, Branch):
            for item in value:
                descend(item.value, f"{key}__map_{item.key}")
        elif (items := seq(value)) is not None:
            for i, v in enumerate(items):
                descend(v, f"{key}__list_{i}")
        else:
            out.append(Item(key, value))

    for item in branch:
        descend(item.value, f"{prefix}{item.key}")
    return Branch(sorted(out, key=lambda i: str(i.key)))


def encrypt(plaintext: bytes, name: str, recipients: Sequence[str], *,
            data_key: bytes | None = None, lastmodified: str = "2026-11-26T12:00:00Z",
            rules: Rules | None = None, mac_only: bool = False,
            ivs: Mapping[str, bytes] | None = None, wrapped: Mapping[str, str] | None = None,
            layout: str = "3.13", tamper: Callable[[list[Branch]], None] | None = None) -> bytes:
    """The SOPS document sops writes for `plaintext` (its format from `name`)."""
    rules = rules or Rules()
    key = data_key if data_key is not None else os.urandom(32)
    branches = load_plain(plaintext, name)
    mac = encrypt_tree(branches, key, rules, mac_only, ivs)
    if tamper:
        tamper(branches)
    enc_mac = encrypt_value(mac, key, lastmodified, ivs.get(lastmodified) if ivs else None)
    ages = [(r, (wrapped or {}).get(r) or wrap(key, r)) for r in recipients]
    meta = metadata(ages, lastmodified, enc_mac, rules, mac_only, layout)
    fmt = sops.format_for(name)
    if fmt == "yaml":
        for b in branches:
            b.append(Item("sops", meta))
        return yamlfmt.emit(branches)
    if fmt in ("json", "binary"):
        branches[0].append(Item("sops", meta))
        return formats.emit("json", branches)
    if fmt == "dotenv":
        flat = flatten(meta, "sops_")
        for item in flat:
            if isinstance(item.value, bool):
                item.value = "true" if item.value else "false"
        branches[0] += flat
        return formats.emit("dotenv", branches)
    flat = flatten(meta, "")
    for item in flat:
        if isinstance(item.value, str):
            item.value = item.value.replace("\n", "\\n")
    branches[0].append(Item("sops", flat))
    return formats.emit("ini", branches)
