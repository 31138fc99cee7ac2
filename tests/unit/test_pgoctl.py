"""pgoctl's own parts: its quick reading of the command line (held to argparse's), the
OpenSSH key check, and how ssh's log becomes pgoctl's one line."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import subprocess
from pathlib import Path

import asyncssh
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgo import knownhosts, openssh, request, target
from pgo.cli import pgoctl

WORDS = ["-i", "-p", "-v", "--", "--identity", "--port", "--verbose", "--identity=k",
         "--port=2", "-ik", "-p22", "-p=3", "-vi", "--ident", "-x", "-", "-1", "22", "k",
         "h:w//ps", "a b", "", "-h2", "--port=x", "0x10", "2_2", " 7"]


def argparse_reads(argv: list[str]) -> tuple[object, ...] | None:
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            ns = pgoctl.parser().parse_args(argv)
        except SystemExit:
            return None
    return (ns.identity, ns.port, ns.verbose, ns.target, ns.args)


@given(st.lists(st.sampled_from(WORDS), max_size=7))
def test_quick_args_read_as_argparse_does(argv: list[str]) -> None:
    quick = pgoctl.quick_args(argv)
    if quick is not None:
        assert argparse_reads(argv) == \
            (quick.identity, quick.port, quick.verbose, quick.target, quick.args)


@pytest.mark.parametrize("argv", [
    ["-i", "k", "h:w//ps"], ["-i", "k", "-p", "2022", "-v", "--", "h:w//logs", "-f"],
    ["h:w//exec", "app", "sh", "-c", "exit 3"], ["--identity=k", "--port=1", "h:w//ps"],
])
def test_the_usual_command_lines_are_read_quickly(argv: list[str]) -> None:
    assert pgoctl.quick_args(argv) is not None


@given(st.lists(st.text(max_size=8), max_size=5))
def test_the_request_line_reads_back_word_for_word(words: list[str]) -> None:
    words = [w for w in words if "\x00" not in w]
    req = request.parse(target.request_line("pgo", "exec", words))
    assert (req.name, req.command, req.args) == ("pgo", "exec", tuple(words))


@pytest.mark.parametrize("kind", ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"])
def test_an_openssh_key_gives_its_public_half(kind: str) -> None:
    key = asyncssh.generate_private_key(kind)
    assert openssh.public_key(key.export_private_key()) == key.public_data
    # a CI variable as pgoctl normalizes it reads the same
    text = key.export_private_key().decode().strip() + "\n"
    assert openssh.public_key(text.encode()) == key.public_data


def test_other_keys_go_to_the_built_in_client(tmp_path: Path) -> None:
    """Anything ssh might read otherwise than asyncssh: encrypted, other formats, broken."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    good = key.export_private_key()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f",
                    str(tmp_path / "k")], check=True)
    assert openssh.public_key((tmp_path / "k").read_bytes()) is None  # a passphrase
    assert openssh.public_key(key.export_private_key("pkcs8-pem")) is None
    assert openssh.public_key(key.export_private_key("pkcs8-pem", passphrase="x")) is None
    assert openssh.public_key(key.export_public_key()) is None
    assert openssh.public_key(asyncssh.generate_private_key(
        "ssh-rsa").export_private_key("pkcs1-pem")) is None
    assert openssh.public_key(good.replace(b"AAAA", b"AAAB", 1)) is None  # header damaged
    lines = good.splitlines()
    assert openssh.public_key(b"\n".join(lines[:3] + lines[-1:])) is None  # truncated
    assert openssh.public_key(b"") is None and openssh.public_key(b"garbage") is None


def test_ssh_is_found_or_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "ssh"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'none'}:{tmp_path}")
    monkeypatch.delenv("PGOCTL_SSH", raising=False)
    assert openssh.find_ssh() == str(fake)
    monkeypatch.setenv("PGOCTL_SSH", "none")
    assert openssh.find_ssh() is None
    monkeypatch.setenv("PGOCTL_SSH", "/opt/ssh")
    assert openssh.find_ssh() == "/opt/ssh"
    monkeypatch.delenv("PGOCTL_SSH")
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    assert openssh.find_ssh() is None


CHANGED = """\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
The fingerprint for the ED25519 key sent by the remote host is
SHA256:Z+uErqBc93zu09oZk692cxnx7uxOe7WoULdSKTgMap0.
Offending ED25519 key in /proc/1/fd/4:1
Host key for [h]:2222 has changed and you have requested strict checking.
Host key verification failed.
"""


@pytest.mark.parametrize(("log", "said"), [
    ("", None),  # the remote command's own 255
    ("ssh: connect to host h port 2222: Connection refused\n", "[h]:2222: Connection refused"),
    ("ssh: Could not resolve hostname h: Name or service not known\n",
     "[h]:2222: Name or service not known"),
    ("root@h: Permission denied (publickey).\n", "[h]:2222: the server refused the key"),
    ("Connection closed by 127.0.0.1 port 2222\n", "[h]:2222: Connection lost"),
    ("kex_exchange_identification: read: Connection reset by peer\n",
     "[h]:2222: Connection lost"),
    ("something new\n", "[h]:2222: something new"),
    (CHANGED, "the host key of [h]:2222 has changed (it is now SHA256:Z+uErqBc93zu09oZk692cx"
              "nx7uxOe7WoULdSKTgMap0), which can mean that someone is intercepting the "
              "connection; if the server's key really changed, forget the old one (line 2 "
              "of /kh): ssh-keygen -R '[h]:2222' -f /kh"),
])
def test_what_ssh_logged_becomes_one_line(log: str, said: str | None) -> None:
    known = "[other]:2222 ssh-ed25519 AAAA1\n[h]:2222 ssh-ed25519 AAAA2\n"
    assert openssh.failure(log, known, "[h]:2222", "/kh") == said


def test_first_use_is_remembered_as_the_built_in_client_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    line = " ".join(key.export_public_key().decode().split()[:2])
    path = str(tmp_path / "new" / "known_hosts")
    knownhosts.first_use(path, "[h]:2222", line, verbose=True)
    assert Path(path).read_text() == f"[h]:2222 {line}\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert capsys.readouterr().err == (f"pgoctl: remembered [h]:2222's host key "
                                       f"{key.get_fingerprint()} in {path}\n")
    assert knownhosts.lines_for(Path(path).read_text() + "# [h]:2222 x y\n[h]:22 a b\n",
                                "[h]:2222") == f"[h]:2222 {line}\n"
    os.chmod(tmp_path / "new", 0o500)
    try:
        if os.access(path, os.W_OK):  # root writes anyway
            return
        knownhosts.first_use(path, "[k]:2222", line, verbose=False)
        assert "warning: could not remember the host key" in capsys.readouterr().err
    finally:
        os.chmod(tmp_path / "new", 0o700)
