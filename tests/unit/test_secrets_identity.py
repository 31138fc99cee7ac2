"""A service's age identity: made once, root-only, never readable by the service's user,
never logged; an operator's identity file (several identities: key rotation); the
`age_identity` key of pgo.toml; `pgod recipient`."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pyrage
import pytest

from pgo import config
from pgo.errors import ConfigError, SecretError
from pgo.secrets import identity

KEYS = Path(__file__).resolve().parents[1] / "sops-testdata" / "keys"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (file owners)")


def nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


@root_only
def test_made_on_first_need_root_owned_mode_0600(tmp_path: Path) -> None:
    private = tmp_path / ".pgo" / "services" / "shop"
    ids = identity.ensure(private)
    key = private / identity.IDENTITY_FILE
    st = key.lstat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert stat.S_IMODE(private.stat().st_mode) & 0o077 == 0
    text = key.read_text()
    assert text.startswith("# created: ") and f"# public key: {ids.recipient}\n" in text
    assert ids.recipient.startswith("age1") and len(ids.identities) == 1
    assert sorted(os.listdir(private)) == [identity.IDENTITY_FILE]  # no temporary left


@root_only
def test_made_once_then_kept(tmp_path: Path) -> None:
    first = identity.ensure(tmp_path).recipient
    assert identity.ensure(tmp_path).recipient == first
    assert identity._make(tmp_path).recipient == first  # a racing maker never replaces it


@root_only
def test_the_service_user_can_not_read_it() -> None:
    user = nobody()
    private = Path(tempfile.mkdtemp(prefix="pgo-test-private-", dir="/tmp"))
    try:
        private.chmod(0o711)  # as pgod keeps DIR/.pgo/services/NAME: traversable
        identity.ensure(private)
        control = private / "control"
        control.write_text("readable\n")
        control.chmod(0o644)

        def cat(path: Path) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(["/bin/cat", str(path)], user=user.pw_uid,
                                  group=user.pw_gid, extra_groups=[], capture_output=True,
                                  cwd="/")

        assert cat(control).stdout == b"readable\n"  # the directory lets the user through
        probe = cat(private / identity.IDENTITY_FILE)
        assert probe.returncode != 0 and b"Permission denied" in probe.stderr
        assert probe.stdout == b""
    finally:
        shutil.rmtree(private)


@root_only
def test_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ids = identity.ensure(tmp_path)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert ids.recipient in logged
    assert "AGE-SECRET-KEY" not in logged
    assert "AGE-SECRET-KEY" not in repr(ids) and "AGE-SECRET-KEY" not in str(ids)


@root_only
def test_a_symlink_in_its_place_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text((KEYS / "key1.txt").read_text())
    target.chmod(0o600)
    private = tmp_path / "private"
    private.mkdir()
    (private / identity.IDENTITY_FILE).symlink_to(target)
    with pytest.raises(SecretError, match="symlink"):
        identity.ensure(private)


@root_only
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644])
def test_a_key_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    identity.ensure(tmp_path)
    (tmp_path / identity.IDENTITY_FILE).chmod(mode)
    with pytest.raises(SecretError, match="chmod 600") as e:
        identity.ensure(tmp_path)
    assert "AGE-SECRET-KEY" not in str(e.value)


@root_only
def test_a_key_of_another_owner_is_refused(tmp_path: Path) -> None:
    identity.ensure(tmp_path)
    os.chown(tmp_path / identity.IDENTITY_FILE, nobody().pw_uid, nobody().pw_gid)
    with pytest.raises(SecretError, match="owned by uid"):
        identity.ensure(tmp_path)


def _operator_file(tmp_path: Path, *names: str) -> Path:
    path = tmp_path / "team1.txt"
    path.write_text("".join((KEYS / f"{n}.txt").read_text() + "\n# a comment\n\n"
                            for n in names))
    path.chmod(0o600)
    return path


def test_an_identity_file_with_two_identities_for_rotation(tmp_path: Path) -> None:
    ids = identity.read(_operator_file(tmp_path, "key1", "key2"))
    assert len(ids.identities) == 2
    key2 = pyrage.x25519.Identity.from_str(
        [ln for ln in (KEYS / "key2.txt").read_text().split() if ln.startswith("AGE-")][0])
    assert ids.recipient == str(key2.to_public())  # the newest: age-keygen >> appends


@pytest.mark.parametrize("text, why", [
    ("", "holds no age identity"),
    ("# only a comment\n", "holds no age identity"),
    ("AGE-SECRET-KEY-1NOTAKEY\n", "line 1 is not a valid age identity"),
    ("# ok\nsecret-password-here\n", "line 2 is not an X25519 age identity"),
    ("AGE-PLUGIN-YUBIKEY-1XYZ\n", "line 1 is not an X25519"),
])
def test_a_bad_identity_file_names_the_line_not_its_content(tmp_path: Path, text: str,
                                                            why: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(SecretError) as e:
        identity.read(path)
    assert why in str(e.value) and str(path) in str(e.value)
    assert "secret-password-here" not in str(e.value) and "NOTAKEY" not in str(e.value)


def test_a_missing_identity_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="can not read it"):
        identity.read(tmp_path / "missing.txt")


def _service(**extra: object) -> config.Service:
    return config.Service(name="shop", user="root", repository="/r", **extra)  # type: ignore[arg-type]


def test_the_operators_file_is_used_and_no_key_is_made(tmp_path: Path) -> None:
    path = _operator_file(tmp_path, "key1")
    private = tmp_path / "private"
    ids = identity.for_service(_service(age_identity=str(path)), private)
    assert ids.source == str(path)
    assert not private.exists()


def test_without_create_a_missing_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SecretError):
        identity.for_service(_service(), tmp_path, create=False)
    assert not (tmp_path / identity.IDENTITY_FILE).exists()


# -- pgo.toml ------------------------------------------------------------------------------

def parse(extra: str) -> config.Config:
    text = f'[[services]]\nname = "shop"\nuser = "root"\nrepository = "/r"\n{extra}\n'
    return config.parse(text, "pgo.toml", known_user=lambda u: True)


def test_config_age_identity() -> None:
    svc = parse('age_identity = "/etc/pgo/keys/team1.txt"').services[0]
    assert svc.age_identity == "/etc/pgo/keys/team1.txt"
    assert parse("").services[0].age_identity is None


@pytest.mark.parametrize("value, why", [
    ('"keys/team1.txt"', "absolute path"),
    ('"/etc/pgo/../shadow"', "absolute path"),
    ('"/etc/pgo/keys/"', "absolute path"),
    ('""', "absolute path"),
    ("1", "must be a string"),
])
def test_config_age_identity_is_checked(value: str, why: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(f"age_identity = {value}")
    assert str(e.value).startswith("pgo.toml: service shop: key 'age_identity': ")
    assert why in str(e.value)


# -- pgod recipient ---------------------------------------------------------------------------

def pgod(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgo.cli.pgod", *args], capture_output=True,
                          text=True, timeout=60)


@root_only
def test_pgod_recipient_prints_one_line_and_makes_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "pgo.toml"
    cfg.write_text('[[services]]\nname = "shop"\nuser = "root"\nrepository = "/r"\n')
    out = pgod("recipient", "-c", str(cfg), "-d", str(tmp_path / "d"), "shop")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("age1")
    key = tmp_path / "d" / ".pgo" / "services" / "shop" / identity.IDENTITY_FILE
    assert identity.read(key).recipient == lines[0]
    again = pgod("recipient", "-c", str(cfg), "-d", str(tmp_path / "d"), "shop")
    assert again.stdout == out.stdout


def test_pgod_recipient_of_the_operators_file(tmp_path: Path) -> None:
    path = _operator_file(tmp_path, "key1", "key2")
    cfg = tmp_path / "pgo.toml"
    cfg.write_text('[[services]]\nname = "shop"\nuser = "root"\nrepository = "/r"\n'
                   f'age_identity = "{path}"\n')
    out = pgod("recipient", "-c", str(cfg), "-d", str(tmp_path / "d"), "shop")
    assert out.returncode == 0, out.stderr
    assert out.stdout == identity.read(path).recipient + "\n"


def test_pgod_recipient_of_an_unknown_service(tmp_path: Path) -> None:
    cfg = tmp_path / "pgo.toml"
    cfg.write_text('[[services]]\nname = "shop"\nuser = "root"\nrepository = "/r"\n')
    out = pgod("recipient", "-c", str(cfg), "-d", str(tmp_path / "d"), "nope")
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr == f"pgod recipient: no service 'nope' in {cfg}\n"


def test_pgod_recipient_usage_errors_are_one_line(tmp_path: Path) -> None:
    out = pgod("recipient")
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1
    bad = tmp_path / "bad.toml"
    bad.write_text("[[services]]\nname = 1\n")
    out = pgod("recipient", "-c", str(bad), "x")
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1
