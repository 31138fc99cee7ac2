"""Decrypting a checkout in place: every tracked SOPS document becomes its plaintext (same
path, the service user's, mode 0600); symlinks are never followed; an oversized document,
a wrong key or a tampered file refuses the whole commit and writes nothing; a file that
merely mentions sops is left alone; nothing is parsed when no file looks encrypted."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from pathlib import Path

import pyrage
import pytest

from pgo.errors import SecretError
from pgo.secrets import checkout
from pgo.secrets.identity import Identities, parse

DATA = Path(__file__).resolve().parents[1] / "sops-testdata"
VECTORS = DATA / "vectors"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (file owners)")


def key(name: str) -> Identities:
    path = DATA / "keys" / f"{name}.txt"
    return parse(path.read_text(), str(path))


def owner() -> tuple[int, int]:
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    user = pwd.getpwnam("nobody")
    return user.pw_uid, user.pw_gid


def plant(root: Path, rel: str, source: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(source if isinstance(source, bytes) else (VECTORS / source).read_bytes())
    return path


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() or p.is_symlink())


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    plant(root, "app.env", "app.env")
    plant(root, "config/db.yaml", "nested.yaml")
    plant(root, "config/settings.json", "nested.json")
    plant(root, "db.password", "binary.txt")
    plant(root, "compose.yaml", b"services:\n  app:\n    image: x\n    env_file: app.env\n")
    plant(root, "README.md", b"We encrypt with sops; each file has a mac.\n")
    return root


def test_every_document_is_decrypted_in_place(repo: Path) -> None:
    compose = (repo / "compose.yaml").read_bytes()
    done = checkout.decrypt_checkout(repo, files(repo), key("key1"), owner())
    assert sorted(done.files) == ["app.env", "config/db.yaml", "config/settings.json",
                                  "db.password"]
    for rel, vector in (("app.env", "app.env"), ("config/db.yaml", "nested.yaml"),
                        ("config/settings.json", "nested.json"),
                        ("db.password", "binary.txt")):
        assert (repo / rel).read_bytes() == (VECTORS / f"{vector}.out").read_bytes()
        st = (repo / rel).lstat()
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert (st.st_uid, st.st_gid) == owner()
    assert (repo / "compose.yaml").read_bytes() == compose
    assert "s3cr3t=with=equals" in done.secrets
    assert not [f for f in os.listdir(repo) if ".pgo-" in f]  # no temporary left behind


def test_the_plaintext_is_a_new_inode(repo: Path) -> None:
    """Replaced, not rewritten: a hard link made to the ciphertext keeps the ciphertext."""
    before = (repo / "app.env").stat().st_ino
    checkout.decrypt_checkout(repo, ["app.env"], key("key1"), owner())
    assert (repo / "app.env").stat().st_ino != before


def test_check_only_writes_nothing(repo: Path) -> None:
    before = {f: (repo / f).read_bytes() for f in files(repo)}
    done = checkout.decrypt_checkout(repo, files(repo), key("key1"), owner(), write=False)
    assert len(done.files) == 4
    assert {f: (repo / f).read_bytes() for f in files(repo)} == before


def test_nothing_encrypted_never_asks_for_an_identity(tmp_path: Path) -> None:
    plant(tmp_path, "compose.yaml", b"services: {}\n")
    plant(tmp_path, "notes.yaml", b"tools:\n  sops: yes\n  mac: laptop\n")

    def no_identity() -> Identities:
        raise AssertionError("the identity was asked for")

    done = checkout.decrypt_checkout(tmp_path, files(tmp_path), no_identity, owner())
    assert done.files == () and done.secrets == ()


def test_the_identity_is_asked_for_once_when_needed(repo: Path) -> None:
    calls = []

    def lazy() -> Identities:
        calls.append(1)
        return key("key1")

    checkout.decrypt_checkout(repo, files(repo), lazy, owner())
    assert calls == [1]


@pytest.mark.parametrize("rel, content", [
    ("README.md", b"Encrypt with sops. A dotenv file ends in sops_mac=ENC[...] lines.\n"),
    (".sops.yaml", b"creation_rules:\n  - path_regex: .*\\.env$\n    age: age1xyz\n"),
    ("docs/sops.yaml", b"# sops: documents have a mac:\nsops_is: a tool\n"),
    ("app.json", b'{"sops": "a tool", "mac": "an address"}\n'),
    ("x.ini", b"[sops]\nwhat = a mac of nothing\n"),
])
def test_a_file_that_merely_mentions_sops_is_left_alone(tmp_path: Path, rel: str,
                                                        content: bytes) -> None:
    path = plant(tmp_path, rel, content)
    done = checkout.decrypt_checkout(tmp_path, [rel], key("key1"), owner())
    assert done.files == ()
    assert path.read_bytes() == content


def test_a_symlinked_file_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    secret = plant(outside, "app.env", "app.env")
    before = secret.read_bytes()
    repo = tmp_path / "checkout"
    repo.mkdir()
    (repo / "app.env").symlink_to(secret)
    done = checkout.decrypt_checkout(repo, ["app.env"], key("key1"), owner())
    assert done.files == ()
    assert secret.read_bytes() == before  # the target was neither decrypted nor replaced
    assert (repo / "app.env").is_symlink()


def test_a_symlinked_directory_on_the_way_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    secret = plant(outside, "app.env", "app.env")
    before = secret.read_bytes()
    repo = tmp_path / "checkout"
    inside = plant(repo, "real.env", "app.env")
    (repo / "conf").symlink_to(outside)
    with pytest.raises(SecretError) as e:
        checkout.decrypt_checkout(repo, ["real.env", "conf/app.env"], key("key1"), owner())
    assert str(e.value) == "conf/app.env: conf is a symlink or not a directory; not followed"
    assert secret.read_bytes() == before
    assert inside.read_bytes() == (VECTORS / "app.env").read_bytes()  # nothing written


def test_a_file_name_can_not_break_the_line_of_an_error(tmp_path: Path) -> None:
    """File names are the team's: a newline in one must not forge a log line."""
    outside = tmp_path / "outside"
    outside.mkdir()
    repo = tmp_path / "checkout"
    repo.mkdir()
    (repo / "x\n[shop] deployed").symlink_to(outside)
    with pytest.raises(SecretError) as e:
        checkout.decrypt_checkout(repo, ["x\n[shop] deployed/app.env"], key("key1"), owner())
    assert "\n" not in str(e.value)
    assert str(e.value).startswith("x\\x0a[shop] deployed/app.env: x\\x0a[shop] deployed is")


def test_a_fifo_is_skipped_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.env")
    plant(tmp_path, "app.env", "app.env")
    done = checkout.decrypt_checkout(tmp_path, ["pipe.env", "app.env"], key("key1"), owner())
    assert done.files == ("app.env",)


def test_an_oversized_document_is_refused(tmp_path: Path) -> None:
    padding = b"#" + b"x" * 1023 + b"\n"
    big = padding * 1100 + (VECTORS / "app.env").read_bytes()
    path = plant(tmp_path, "big.env", big)
    with pytest.raises(SecretError) as e:
        checkout.decrypt_checkout(tmp_path, ["big.env"], key("key1"), owner())
    assert str(e.value) == "big.env: a SOPS document larger than 1 MiB; refused"
    assert path.read_bytes() == big


def test_an_oversized_ordinary_file_is_left_alone(tmp_path: Path) -> None:
    plant(tmp_path, "image.png", os.urandom(3 << 20))
    plant(tmp_path, "app.env", "app.env")
    done = checkout.decrypt_checkout(tmp_path, ["image.png", "app.env"], key("key1"), owner())
    assert done.files == ("app.env",)


def test_a_wrong_key_refuses_the_commit_and_writes_nothing(repo: Path) -> None:
    before = {f: (repo / f).read_bytes() for f in files(repo)}
    with pytest.raises(SecretError) as e:
        checkout.decrypt_checkout(repo, files(repo), key("other"), owner())
    assert str(e.value).startswith("app.env: can not be decrypted: no identity of this "
                                   "service opens it")
    assert {f: (repo / f).read_bytes() for f in files(repo)} == before


def test_a_tampered_document_names_the_file_never_a_value(repo: Path) -> None:
    path = repo / "config" / "db.yaml"
    path.write_bytes(path.read_bytes().replace(b"plain_unencrypted: visible",
                                               b"plain_unencrypted: evil-value"))
    with pytest.raises(SecretError) as e:
        checkout.decrypt_checkout(repo, files(repo), key("key1"), owner())
    msg = str(e.value)
    assert msg.startswith("config/db.yaml: can not be decrypted: MAC mismatch")
    assert "\n" not in msg and "evil-value" not in msg and "s3cr3t" not in msg


def test_a_damaged_document_of_a_named_format_is_refused(tmp_path: Path) -> None:
    data = (VECTORS / "nested.json").read_bytes()
    plant(tmp_path, "broken.json", data[:-20])
    with pytest.raises(SecretError, match="broken.json: looks like a SOPS document"):
        checkout.decrypt_checkout(tmp_path, ["broken.json"], key("key1"), owner())


def test_a_document_named_for_another_format_is_reported_not_decrypted(tmp_path: Path) -> None:
    path = plant(tmp_path, "secret.txt", "nested.yaml")
    done = checkout.decrypt_checkout(tmp_path, ["secret.txt"], key("key1"), owner())
    assert done.files == () and done.mismatched == ("secret.txt",)
    assert path.read_bytes() == (VECTORS / "nested.yaml").read_bytes()


@pytest.mark.parametrize("rel", ["../outside.env", "/etc/passwd", "a//b", "./x", ""])
def test_paths_outside_the_checkout_are_refused(tmp_path: Path, rel: str) -> None:
    with pytest.raises(SecretError, match="not a path inside the checkout"):
        checkout.decrypt_checkout(tmp_path, [rel], key("key1"), owner())


def test_missing_tracked_files_are_skipped(tmp_path: Path) -> None:
    done = checkout.decrypt_checkout(tmp_path, ["gone.env", "gone/dir.env"], key("key1"),
                                     owner())
    assert done.files == ()


def test_a_file_replaced_by_a_symlink_during_the_write_is_replaced_not_followed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plaintext is renamed over the name: whatever is there then (a symlink planted by
    a container that mounts the checkout) is replaced, and its target left alone."""
    outside = plant(tmp_path / "outside", "victim", b"do not touch\n")
    repo = tmp_path / "checkout"
    plant(repo, "app.env", "app.env")
    real_replace = checkout._Tree.replace

    def swap_then_replace(self: checkout._Tree, rel: str, content: bytes,
                          who: tuple[int, int]) -> None:
        (repo / rel).unlink()
        (repo / rel).symlink_to(outside)
        real_replace(self, rel, content, who)

    monkeypatch.setattr(checkout._Tree, "replace", swap_then_replace)
    checkout.decrypt_checkout(repo, ["app.env"], key("key1"), owner())
    assert outside.read_bytes() == b"do not touch\n"
    assert not (repo / "app.env").is_symlink()


def test_tracked_files_from_git_ls_files_z() -> None:
    assert checkout.tracked_files(b"a.env\0dir/b c.yaml\0caf\xe9.env\0") == [
        "a.env", "dir/b c.yaml", "caf\udce9.env"]
    assert checkout.tracked_files(b"") == []


def test_non_utf8_names_round_trip(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.env")
    (tmp_path / os.fsencode(name).decode("utf-8", "surrogateescape")).write_bytes(
        (VECTORS / "app.env").read_bytes())
    done = checkout.decrypt_checkout(tmp_path, [name], key("key1"), owner())
    assert done.files == (name,)


@root_only
def test_more_documents_than_the_bound_are_refused(tmp_path: Path) -> None:
    for i in range(checkout.MAX_DOCUMENTS + 1):
        shutil.copy(VECTORS / "rotated-old.env", tmp_path / f"{i}.env")
    with pytest.raises(SecretError, match="more than 256 SOPS documents, or more than 8 MiB"):
        checkout.decrypt_checkout(tmp_path, [f"{i}.env" for i in range(257)], key("key1"),
                                  owner(), write=False)


def test_more_bytes_of_documents_than_the_bound_are_refused(tmp_path: Path) -> None:
    padding = b"#" + b"x" * 1023 + b"\n"
    doc = padding * 1000 + (VECTORS / "app.env").read_bytes()  # under 1 MiB each
    for i in range(9):
        (tmp_path / f"{i}.env").write_bytes(doc)
    with pytest.raises(SecretError, match="8.env: more than 256 SOPS documents, or more"):
        checkout.decrypt_checkout(tmp_path, [f"{i}.env" for i in range(9)], key("key1"),
                                  owner(), write=False)


def test_identities_are_plain_pyrage_objects() -> None:
    assert all(isinstance(i, pyrage.x25519.Identity) for i in key("key1").identities)
