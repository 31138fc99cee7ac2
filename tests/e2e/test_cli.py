"""pgod's command line: bad input is one line and a non-zero exit, nothing started."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import harness as h


def pgod(*args: str, user: str | None = None) -> tuple[int, list[str]]:
    argv = [h.PGOD, *args]
    if user:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    r = h.run(*argv, check=False, timeout=60)
    return r.returncode, (r.stdout + r.stderr).splitlines()


@pytest.mark.parametrize(("args", "code", "text"), [
    (["-t", "5x"], 2, "invalid duration '5x'"),
    (["-s", "nonsense"], 2, "invalid address"),
    (["-d", "/"], 2, "refusing to use / as --dir"),
    (["-c", "/nonexistent.toml"], 2, "/nonexistent.toml: can not read"),
])
def test_bad_arguments_are_one_line(args: list[str], code: int, text: str) -> None:
    rc, lines = pgod(*args)
    assert rc == code
    assert len(lines) == 1 and text in lines[0], lines


def test_bad_config_names_file_service_and_key(base: Path, projects: list[str]) -> None:
    name = h.unique()
    projects.append(name)
    cfg = base / "pgo.toml"
    cfg.write_text(f'[[services]]\nname = "{name}"\nuser = "{h.USER}"\nrepository = "/x"\n'
                   'urls = { "example.org" = "no-port" }\n')
    rc, lines = pgod("-c", str(cfg), "-d", str(base / "d"), "-s", "off", "-m", "off")
    assert rc == 2
    assert lines == [f"{cfg}: service {name}: key 'urls': target of 'example.org' must be "
                     "\"host:port\", got 'no-port'"]
    assert not (base / "d").exists(), "nothing was started"


def test_unknown_user_is_refused(base: Path) -> None:
    cfg = base / "pgo.toml"
    cfg.write_text('[[services]]\nname = "a"\nuser = "no-such-user-here"\nrepository = "/x"\n')
    rc, lines = pgod("-c", str(cfg))
    assert rc == 2 and lines == [f"{cfg}: service a: key 'user': no such user "
                                 "'no-such-user-here' on this machine"]


def test_not_root_says_so() -> None:
    rc, lines = pgod("-c", "/dev/null", user=h.USER)
    assert rc == 1 and lines == ["pgod: must run as root (it runs each service as its own user)"]


def test_version() -> None:
    rc, lines = pgod("--version")
    assert rc == 0 and lines[0].startswith("pgod ")


@pytest.mark.parametrize("flag", ["-s", "-m"])
def test_a_listener_address_in_use_is_one_line(base: Path, flag: str) -> None:
    """A port another program holds: pgod says which listener and exits 1, no traceback."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        cfg = base / "pgo.toml"
        cfg.write_text("")
        cfg.chmod(0o600)
        other = "-m" if flag == "-s" else "-s"
        rc, lines = pgod("-c", str(cfg), "-d", str(base / "d"), "--datadir",
                         str(base / "data"), flag, f"127.0.0.1:{port}", other, "off")
    assert rc == 1, lines
    what = "-s (SSH)" if flag == "-s" else "-m (metrics, webhooks, status page)"
    assert lines[-1] == f"pgod: can not listen on 127.0.0.1:{port}, {what}: Address " \
                        "already in use", lines
    assert not any("Traceback" in ln for ln in lines), lines
