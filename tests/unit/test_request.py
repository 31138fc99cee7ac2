"""The pure parts of the SSH interface: request parsing, argument rules, known hosts, keys."""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import time
from pathlib import Path

import asyncssh
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgo import commands, knownhosts, request, sshd, sshkeys, target
from pgo.errors import HostKeyError, UsageError
from pgo.request import Refused


def checked(line: str) -> tuple[request.Spec, request.Checked]:
    req = request.parse(line)
    spec, args = commands.find(req.command, req.args)
    return spec, request.check_args(spec, args)


def refused(line: str) -> int:
    try:
        checked(line)
    except Refused as e:
        return e.status
    return 0


@pytest.mark.parametrize(("line", "name", "command", "args"), [
    ("pgo//ps", "pgo", "ps", ()),
    ("pgo//logs --tail 5 web", "pgo", "logs", ("--tail", "5", "web")),
    ("pgo//git pull", "pgo", "git pull", ()),
    ("pgo//git hash", "pgo", "git hash", ()),
    ("pgo//exec web sh -c 'exit 3'", "pgo", "exec", ("web", "sh", "-c", "exit 3")),
    ('a-b_c//journal --since "1 hour ago"', "a-b_c", "journal", ("--since", "1 hour ago")),
])
def test_parse(line: str, name: str, command: str, args: tuple[str, ...]) -> None:
    req = request.parse(line)
    spec, rest = commands.find(req.command, req.args)
    assert (req.name, spec.name, rest) == (name, command, args)


@pytest.mark.parametrize(("line", "status"), [
    ("", 400), ("ps", 400), ("pgo/ps", 400), ("Pgo//ps", 400), ("../x//ps", 400),
    ("pgo//ps 'unbalanced", 400), ("pgo//ps\x00", 400), ("pgo//" + "x" * 70000, 400),
    ("pgo//frob", 406), ("pgo//git", 406), ("pgo//git push", 406), ("pgo//", 400),
    ("h:pgo//ps", 400),
    ("'pgo\n//ps'", 400), ("'pgo\n'//ps", 400),
])
def test_malformed(line: str, status: int) -> None:
    assert refused(line) == status


@pytest.mark.parametrize("line", [
    "pgo//ps", "pgo//ps -a", "pgo//ps --format json web", "pgo//logs -f web",
    "pgo//logs --tail=5 -t web db", "pgo//logs -n 5", "pgo//exec web ls -l /",
    "pgo//exec -u root -e A=--privileged web sh", "pgo//exec -- web ls",
    "pgo//exec web ls --project-name other", "pgo//down", "pgo//down -v",
    "pgo//stop -t 5 web", "pgo//restart web", "pgo//pull -q", "pgo//journal -f -n 10",
    "pgo//journal --since yesterday", "pgo//status", "pgo//ping", "pgo//up", "pgo//load",
    "pgo//history", "pgo//freeze", "pgo//unfreeze", "pgo//rollback", "pgo//rollback 1a2B",
    "pgo//rollback -- " + "a" * 40,
])
def test_allowed(line: str) -> None:
    assert refused(line) == 0


@pytest.mark.parametrize("line", [
    # another project, file, directory or env file
    "pgo//ps --project-name other", "pgo//ps -p other", "pgo//logs --file /etc/passwd",
    "pgo//logs -f=x", "pgo//ps --project-directory /", "pgo//ps --env-file /etc/shadow",
    "pgo//ps --profile x", "pgo//logs -- --project-name", "pgo//logs ../x",
    # privileges
    "pgo//exec --privileged web sh", "pgo//exec -T --privileged web sh",
    "pgo//down --rmi all", "pgo//pull --policy always",
    # a journal of someone else
    "pgo//journal _UID=0", "pgo//journal -u ssh", "pgo//journal --directory /",
    "pgo//journal -D /var/log/journal", "pgo//journal --file x", "pgo//journal + _UID=0",
    "pgo//journal -M other", "pgo//journal --merge",
    # shapes
    "pgo//exec web", "pgo//exec", "pgo//exec -e", "pgo//up web", "pgo//ping x",
    "pgo//ps -aq", "pgo//logs --tail", "pgo//ps --all=yes", "pgo//git pull --force",
    "pgo//rollback HEAD~1", "pgo//rollback abc", "pgo//rollback 1a2b 3c4d",
    "pgo//rollback --hard", "pgo//rollback " + "a" * 65, "pgo//freeze x", "pgo//history -n 5",
])
def test_refused(line: str) -> None:
    assert refused(line) == 400


def test_flags_come_back_long_with_their_values() -> None:
    s = commands.COMMANDS["exec"]
    ok = request.check_args(s, ("-e", "--privileged", "-u", "0", "web", "sh", "-T"))
    assert ok.flags == ("--env=--privileged", "--user=0")
    assert request.compose_args(s, ok) == [
        "exec", "-T", "--env=--privileged", "--user=0", "web", "sh", "-T"]
    logs = commands.COMMANDS["logs"]
    assert request.compose_args(logs, request.check_args(logs, ("-n", "5", "-f", "web"))) == [
        "logs", "--tail=5", "--follow", "web"]


@given(st.lists(st.text(min_size=0, max_size=12), max_size=6))
def test_words_survive_quoting(words: list[str]) -> None:
    words = [w for w in words if "\x00" not in w]
    req = request.parse(shlex.join(["pgo//exec", "web", "cmd", *words]))
    assert req.args == ("web", "cmd", *words)


@given(st.lists(st.text(max_size=10), max_size=5))
def test_no_refused_flag_reaches_compose(words: list[str]) -> None:
    """Whatever a client sends to ps or logs, every flag compose gets is one listed."""
    for command in ("ps", "logs", "down", "pull", "journal"):
        s = commands.COMMANDS[command]
        try:
            checked = request.check_args(s, tuple(words))
        except Refused:
            continue
        allowed = {f[0] for f in s.flags}
        for flag in checked.flags:
            assert flag.partition("=")[0] in allowed
        assert not any(w.startswith("-") for w in checked.words)


@pytest.mark.parametrize(("word", "parts"), [
    ("server1:pgo//ps", ("server1", "pgo", "ps")),
    ("[::1]:pgo//git", ("::1", "pgo", "git")),
    ("::1:pgo//git", ("::1", "pgo", "git")),
    ("[fe80::1%eth0]:pgo//ps", ("fe80::1%eth0", "pgo", "ps")),
    ("localhost:caddy//exec", ("localhost", "caddy", "exec")),
    ("10.0.0.1:a-b_c//git", ("10.0.0.1", "a-b_c", "git")),
])
def test_targets(word: str, parts: tuple[str, str, str]) -> None:
    t = target.parse_target(word, host=True)
    assert (t.host, t.name, t.command) == parts


@pytest.mark.parametrize("bad", [
    "pgo//ps", "server:pgo", ":pgo//ps", "server://ps", "s:p//", "s:Pgo//ps", "s:pgo\n//ps",
    # never an option or a user for the ssh program pgoctl may start
    "-oProxyCommand=x:pgo//ps", "root@server:pgo//ps", "a b:pgo//ps", "[-x]:pgo//ps",
])
def test_bad_targets(bad: str) -> None:
    with pytest.raises(UsageError):
        target.parse_target(bad, host=True)


def test_one_parser_for_every_target() -> None:
    """pgoctl's target, the SSH request and the reload line of pgo.toml are one form."""
    from pgo.config import parse_reload

    assert request.parse("pgo//ps -a").name == "pgo"
    reload = parse_reload("caddy.example:caddy//exec caddy reload --config /etc/c")
    assert reload is not None and (reload.host, reload.name) == ("caddy.example", "caddy")
    assert reload.argv == ("caddy", "reload", "--config", "/etc/c")
    for bad in ("-x:caddy//exec caddy", "h:Caddy//exec caddy", "h:caddy//ps", "h:caddy//exec",
                "caddy//exec caddy", "h:caddy//exec 'x"):
        assert parse_reload(bad) is None, bad


def test_every_command_has_a_handler_and_a_summary() -> None:
    for name, spec in commands.COMMANDS.items():
        assert spec.name == name and spec.summary and callable(spec.handler)
        assert spec.positional in ("none", "services", "exec", "commit")
    assert [s.name for s in commands.COMMANDS.values() if s.lock] == [
        "up", "down", "stop", "start", "restart", "pull", "freeze", "unfreeze", "rollback",
        "git pull"]


def test_known_hosts() -> None:
    text = "# c\n[h]:2222 ssh-ed25519 AAAA1\n[other]:2222 ssh-ed25519 AAAA2\n"
    assert knownhosts.check(text, "[h]:2222", "ssh-ed25519 AAAA1").known
    assert knownhosts.check(text, "[new]:2222", "ssh-ed25519 AAAA1").new
    changed = knownhosts.check(text, "[h]:2222", "ssh-ed25519 AAAA9")
    assert not changed.known and not changed.new and changed.line == 2
    assert knownhosts.host_id("h", 22) == "h" and knownhosts.host_id("h", 2222) == "[h]:2222"


def test_known_hosts_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "known_hosts"
    knownhosts.remember(path, "[h]:2222", "ssh-ed25519 AAAA1")
    assert knownhosts.check(path.read_text(), "[h]:2222", "ssh-ed25519 AAAA1").known
    assert os.stat(path).st_mode & 0o777 == 0o600


def _pub(comment: str = "") -> tuple[asyncssh.SSHKey, str]:
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment or None)
    return key, key.export_public_key().decode()


def test_service_keys(tmp_path: Path) -> None:
    k1, p1 = _pub("one")
    k2, p2 = _pub()
    k3, p3 = _pub()
    outside, p4 = _pub()
    (tmp_path / "ssh").mkdir()
    (tmp_path / "ssh" / "a.pub").write_text(f"# team\n\n{p1}{p2}garbage line\n")
    (tmp_path / "ssh" / "b.pub").write_text(f'command="x" {p3}')  # options: not a plain key
    (tmp_path / "ssh" / "notakey.txt").write_text(p3)
    (tmp_path / "elsewhere.pub").write_text(p4)
    (tmp_path / "ssh" / "link.pub").symlink_to(tmp_path / "elsewhere.pub")
    found = sshkeys.read_keys(tmp_path)
    assert found.keys == {k1.public_data, k2.public_data}
    assert found.problems == []


def test_ssh_dir_symlink_is_not_followed(tmp_path: Path) -> None:
    key, pub = _pub()
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.pub").write_text(pub)
    (tmp_path / "checkout").mkdir()
    (tmp_path / "checkout" / "ssh").symlink_to(tmp_path / "real")
    assert sshkeys.read_keys(tmp_path / "checkout").keys == set()
    assert sshkeys.read_keys(tmp_path / "missing").keys == set()


def _checkout(path: Path, commit: str) -> Path:
    """A directory that looks like a checkout of `commit` to git's ref files."""
    (path / ".git" / "refs" / "heads").mkdir(parents=True, exist_ok=True)
    (path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (path / ".git" / "refs" / "heads" / "main").write_text(commit + "\n")
    (path / "ssh").mkdir(exist_ok=True)
    return path


def test_keys_are_read_once_per_commit(tmp_path: Path) -> None:
    """A request does not read the key files: a commit's keys are parsed once, and read
    again when the checkout's HEAD moves."""
    k1, p1 = _pub()
    k2, p2 = _pub()
    co = _checkout(tmp_path, "1" * 40)
    (co / "ssh" / "a.pub").write_text(p1)
    ring = sshkeys.Keyring(lambda: {"svc": co})

    async def keys() -> frozenset[bytes]:
        return await ring.keys_of("svc", co)

    assert asyncio.run(keys()) == {k1.public_data}
    (co / "ssh" / "a.pub").write_text(p2)  # not a commit: nothing changes
    assert asyncio.run(keys()) == {k1.public_data}
    assert asyncio.run(ring.authorized(k1, "svc", co))
    _checkout(co, "2" * 40)
    assert asyncio.run(keys()) == {k2.public_data}
    assert not asyncio.run(ring.authorized(k1, "svc", co))
    (co / ".git" / "HEAD").unlink()  # no commit (a clone in progress): no key
    assert asyncio.run(keys()) == frozenset()


def test_files_written_after_the_commit_are_read(tmp_path: Path) -> None:
    """pgod clones without files while a commit waits for its verdict, and resets the
    checkout later: HEAD stays, the files arrive, git writes its index; the keys count."""
    key, pub = _pub()
    co = _checkout(tmp_path, "1" * 40)
    ring = sshkeys.Keyring(lambda: {"svc": co})
    assert asyncio.run(ring.keys_of("svc", co)) == frozenset()
    (co / "ssh" / "a.pub").write_text(pub)
    (co / ".git" / "index").write_bytes(b"DIRC")  # as `git reset --hard` leaves it
    assert asyncio.run(ring.keys_of("svc", co)) == {key.public_data}


def test_many_requests_at_once_parse_the_keys_once(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    key, pub = _pub()
    co = _checkout(tmp_path, "1" * 40)
    (co / "ssh" / "a.pub").write_text(pub)
    (co / "ssh" / "big.pub").write_text("#" * (sshkeys.MAX_FILE + 1))
    ring = sshkeys.Keyring(lambda: {"svc": co})

    async def many() -> list[frozenset[bytes]]:
        return await asyncio.gather(*(ring.keys_of("svc", co) for _ in range(50)))

    with caplog.at_level(logging.WARNING, "pgo.sshkeys"):
        assert asyncio.run(many()) == [{key.public_data}] * 50
        assert asyncio.run(many()) == [{key.public_data}] * 50
    [record] = caplog.records  # what was left out is said once, for the one parse
    assert "ssh/big.pub is larger than" in record.getMessage()
    assert "[svc] ssh keys of commit 11111111" in record.getMessage()


def test_key_files_are_bounded(tmp_path: Path) -> None:
    """255 files of 64 KiB cost pgod seconds of CPU per request: count, size and key
    lines are bounded, and what is left out is said."""
    pubs = [_pub()[1] for _ in range(4)]
    (tmp_path / "ssh").mkdir()
    for i in range(sshkeys.MAX_FILES + 10):
        (tmp_path / "ssh" / f"k{i:03}.pub").write_text(pubs[i % 4])
    found = sshkeys.read_keys(tmp_path)
    assert len(found.keys) == 4 and found.lines == sshkeys.MAX_FILES
    assert found.problems == [f"{sshkeys.MAX_FILES + 10} ssh/*.pub files: only the first "
                              f"{sshkeys.MAX_FILES} read (up to ssh/k063.pub)"]

    many = "".join(_pub()[1] for _ in range(sshkeys.MAX_KEYS + 5))
    (tmp_path / "ssh" / "k000.pub").write_text(many)
    found = sshkeys.read_keys(tmp_path)
    assert found.lines == sshkeys.MAX_KEYS and len(found.keys) == sshkeys.MAX_KEYS
    assert found.problems[1:] == [f"more than {sshkeys.MAX_KEYS} key lines: the rest of "
                                  "ssh/k000.pub and what follows ignored"]
    (tmp_path / "ssh" / "k000.pub").write_text(pubs[0] + "#" * sshkeys.MAX_FILE)
    assert "ssh/k000.pub is larger than" in sshkeys.read_keys(tmp_path).problems[1]

    for i in range(sshkeys.MAX_ENTRIES):
        (tmp_path / "ssh" / f"x{i}").write_text("")
    found = sshkeys.read_keys(tmp_path)
    assert found.keys == set() and "more than 1024 entries" in found.problems[0]


def test_the_keyring_holds_only_keys_of_tracked_services(tmp_path: Path) -> None:
    """At authentication a key is let in only when some tracked service holds it; a key
    deployed a moment ago is found, one of a service no longer tracked is not."""
    k1, p1 = _pub()
    k2, p2 = _pub()
    nobody = _pub()[0]
    a, b = _checkout(tmp_path / "a", "1" * 40), _checkout(tmp_path / "b", "2" * 40)
    (a / "ssh" / "k.pub").write_text(p1)
    tracked = {"a": a, "b": b}
    asked: list[int] = []

    def now_tracked() -> dict[str, Path]:
        asked.append(1)
        return tracked

    ring = sshkeys.Keyring(now_tracked)

    async def holds(key: asyncssh.SSHKey) -> bool:
        return await ring.holds(key, time.monotonic())

    assert asyncio.run(holds(k1)) and not asyncio.run(holds(nobody))
    (b / "ssh" / "k.pub").write_text(p2)
    _checkout(b, "3" * 40)
    assert asyncio.run(holds(k2))  # a new commit of b: found without waiting for a poll
    del tracked["a"]
    assert not asyncio.run(holds(nobody))
    assert not asyncio.run(holds(k1))

    async def flood() -> list[bool]:  # unknown keys at once: one look at the checkouts
        since = time.monotonic()
        return await asyncio.gather(*(ring.holds(nobody, since) for _ in range(100)))

    before = len(asked)
    assert not any(asyncio.run(flood()))
    assert len(asked) - before == 1


def test_connections_are_limited_per_source() -> None:
    limits = sshd.Limits(startups=6, connections=10, startups_per_source=3,
                         connections_per_source=4)
    assert all(limits.admit("10.0.0.1") for _ in range(3))
    assert not limits.admit("10.0.0.1")  # its startups are used up, not everyone's
    assert limits.admit("10.0.0.2")
    limits.logged_in("10.0.0.1")
    assert limits.admit("10.0.0.1")
    assert not limits.admit("10.0.0.1")  # 4 in all from it
    limits.closed("10.0.0.1", authenticated=False)
    assert limits.admit("10.0.0.1")
    limits.closed("10.0.0.1", authenticated=True)
    for _ in range(3):
        limits.closed("10.0.0.1", authenticated=False)
    limits.closed("10.0.0.2", authenticated=False)
    assert limits.unauthenticated == limits.connections == 0 and limits.by_source == {}


@pytest.mark.parametrize(("peer", "src"), [
    (("192.0.2.7", 40000), "192.0.2.7"),
    (("::ffff:192.0.2.7", 40000, 0, 0), "192.0.2.7"),
    (("2001:db8:1:2:aaaa::1", 40000, 0, 0), "2001:db8:1:2::/64"),
    (("2001:db8:1:2:bbbb::9", 40000, 0, 0), "2001:db8:1:2::/64"),
    (("fe80::1%eth0", 1, 0, 2), "fe80::/64"),
    (None, ""),
])
def test_source_of_a_connection(peer: object, src: str) -> None:
    assert sshd.source(peer) == src


def test_host_key_is_made_once(tmp_path: Path) -> None:
    a = sshkeys.load_host_key(tmp_path / "d")
    b = sshkeys.load_host_key(tmp_path / "d")
    assert a.public_data == b.public_data
    assert os.stat(tmp_path / "d" / sshkeys.HOST_KEY).st_mode & 0o777 == 0o600
    os.chmod(tmp_path / "d" / sshkeys.HOST_KEY, 0o644)
    with pytest.raises(HostKeyError, match="must be a regular file of pgod's user"):
        sshkeys.load_host_key(tmp_path / "d")  # pgo's own error: one line, no traceback
    os.chmod(tmp_path / "d" / sshkeys.HOST_KEY, 0o600)
    (tmp_path / "d" / sshkeys.HOST_KEY).write_text("garbage\n")
    with pytest.raises(HostKeyError, match="not a usable private key"):
        sshkeys.load_host_key(tmp_path / "d")
