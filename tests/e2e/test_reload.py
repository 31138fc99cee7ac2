"""Config reload in a running pgod (SIGHUP, and a change of the file with --restart), and
systemd readiness over a real unix datagram socket."""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path

import pgo.sshd
from tests.e2e import harness as h

ENV_WEB = h.WEB + '    environment:\n      V: "${V:-0}"\n'


def service(name: str, up: h.Upstream, **kw: object) -> dict[str, object]:
    return {"name": name, "user": h.USER, "repository": up.url, **kw}


def started(ids: set[str]) -> dict[str, str]:
    return {c: h.inspect(c)["State"]["StartedAt"] for c in ids}


def env_of(project: str) -> list[str]:
    return [e for c in h.inspect_existing(h.container_ids(project)) for e in c["Config"]["Env"]]


class Notifications:
    """A unix datagram socket in the abstract namespace that collects sd_notify messages."""

    def __init__(self) -> None:
        self.name = "@" + h.unique("pgo-notify-")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.messages: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            with self._lock:
                self.messages.append(data.decode())

    def got(self) -> list[str]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.sock.close()


def test_sighup_applies_the_difference(base, upstream, projects, pgods):
    keep, change, gone, new = (h.unique(p) for p in ("k", "c", "g", "n"))
    projects += [keep, change, gone, new]
    upstream.write("compose.yaml", ENV_WEB)
    upstream.commit("interpolated")
    pgod = h.Pgod(base, [service(keep, upstream), service(change, upstream, env=["V=1"]),
                         service(gone, upstream)], interval="5m", extra=["--restart=false"])
    pgods.append(pgod)
    notes = Notifications()
    try:
        pgod.env = {"NOTIFY_SOCKET": notes.name}
        pgod.start()
        for name in (keep, change, gone):
            pgod.wait_log(rf"\[{name}\] reconcile \(start\) done: deployed")
        kept = started(h.container_ids(keep))
        assert "V=1" in env_of(change)
        h.wait_until(lambda: any("READY=1" in m for m in notes.got()), what="READY=1")

        pgod.write_config([service(keep, upstream), service(change, upstream, env=["V=2"]),
                           service(new, upstream)])
        pgod.proc.send_signal(signal.SIGHUP)
        pgod.wait_log(r"config reload \(SIGHUP\): 1 added, 1 removed, 1 changed")
        pgod.wait_log(rf"\[{change}\] changed \(env\)")
        pgod.wait_log(rf"\[{new}\] reconcile \(start\) done: deployed")
        pgod.wait_log(rf"\[{change}\] reconcile \(start\) done: deployed")
        h.wait_until(lambda: "V=2" in env_of(change), what="the changed env deployed")
        h.wait_until(lambda: not h.container_ids(gone), what="the removed service downed")
        h.wait_until(lambda: not (pgod.dir / gone).exists(), what="its checkout removed")
        # its state goes; its age key stays, for the day it is configured again
        assert [f.name for f in (pgod.dir / ".pgo" / "services" / gone).iterdir()] == \
            ["age.key"]
        # the unchanged service: same tracker (tracked once), same containers
        assert started(h.container_ids(keep)) == kept
        assert pgod.count(rf"\[{keep}\] tracking") == 1
        assert "2 added" not in pgod.log() and pgod.count(rf"\[{keep}\] (changed|removed)") == 0
        # systemd heard about the reload, and that it ended
        h.wait_until(lambda: "RELOADING=1" in "".join(notes.got()), what="RELOADING=1")
        msgs = notes.got()
        reloading = next(i for i, m in enumerate(msgs) if m.startswith("RELOADING=1"))
        assert "MONOTONIC_USEC=" in msgs[reloading]
        h.wait_until(lambda: any(m.startswith("READY=1") for m in notes.got()[reloading:]),
                     what="READY=1 after the reload")

        # an invalid file is refused in one line; everything keeps running as it was
        ids = {n: h.container_ids(n) for n in (keep, change, new)}
        pgod.config.write_text(pgod.config.read_text() + "\n[[services]]\nname = 'x'\n")
        pgod.proc.send_signal(signal.SIGHUP)
        line = pgod.wait_log(r"config reload \(SIGHUP\) refused, the running config stays")
        assert "key 'user': missing" in line
        pgod.config.write_text("this is = = not toml")
        pgod.proc.send_signal(signal.SIGHUP)
        pgod.wait_log(r"config reload \(SIGHUP\) refused.*not valid TOML")
        assert {n: h.container_ids(n) for n in (keep, change, new)} == ids
        assert pgod.proc.poll() is None
        assert pgod.stop() == 0
        h.wait_until(lambda: "STOPPING=1" in notes.got(), what="STOPPING=1")
    finally:
        notes.close()


def test_file_change_reloads_without_a_signal(base, upstream, projects, pgods):
    keep, change = h.unique("k"), h.unique("c")
    projects += [keep, change]
    upstream.write("compose.yaml", ENV_WEB)
    upstream.commit("interpolated")
    pgod = h.Pgod(base, [service(keep, upstream), service(change, upstream, env=["V=1"])],
                  interval="5m")
    pgods.append(pgod)
    pgod.start()
    for name in (keep, change):
        pgod.wait_log(rf"\[{name}\] reconcile \(start\) done: deployed")
    kept = started(h.container_ids(keep))

    # an identical rewrite (new inode, same content) reloads nothing
    text = pgod.config.read_text()
    tmp = pgod.config.with_suffix(".new")
    tmp.write_text(text)
    os.replace(tmp, pgod.config)
    # an invalid one is refused once, the old config keeps running
    pgod.config.write_text(text.replace(f'"{h.USER}"', '"no-such-user-here"', 1))
    pgod.wait_log(r"config reload \(.*pgo.toml changed\) refused.*no such user")
    # then a valid change is applied
    pgod.write_config([service(keep, upstream), service(change, upstream, env=["V=3"])])
    pgod.wait_log(r"config reload \(.*pgo.toml changed\): 0 added, 0 removed, 1 changed")
    h.wait_until(lambda: "V=3" in env_of(change), what="the changed env deployed")
    assert started(h.container_ids(keep)) == kept
    # the identical rewrite was no reload (a refusal may be logged twice: pgod can catch a
    # file half written by the test, and refuses that too)
    assert pgod.count(r"config reload \(.*\): (no service changed|\d+ added)") == 1


def test_ready_when_the_listeners_are_up(base, pgods):
    """READY=1 comes only once the metrics (and SSH) listeners accept connections."""
    pgod = h.Pgod(base, "", interval="5m")
    pgods.append(pgod)
    notes = Notifications()
    try:
        pgod.env = {"NOTIFY_SOCKET": notes.name}
        pgod.start()
        h.wait_until(lambda: "READY=1" in "".join(notes.got()), what="READY=1")
        ports = [pgod.metric_port]
        if "Placeholder" not in (pgo.sshd.__doc__ or ""):
            ports.append(pgod.ssh_port)
        for port in ports:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert notes.got()[0].startswith("READY=1\nSTATUS=tracking 0 service(s)")
        pgod.proc.send_signal(signal.SIGHUP)
        pgod.wait_log(r"config reload \(SIGHUP\): no service changed")
        assert pgod.stop() == 0
        h.wait_until(lambda: notes.got()[-1:] == ["STOPPING=1"], what="STOPPING=1 last")
        assert [m.split("\n")[0] for m in notes.got()] == [
            "READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
    finally:
        notes.close()


def test_no_notify_socket_is_fine(base, pgods, tmp_path: Path):
    """A path NOTIFY_SOCKET nobody listens on: pgod logs it and runs on."""
    pgod = h.Pgod(base, "", interval="5m", env={"NOTIFY_SOCKET": str(tmp_path / "none")})
    pgods.append(pgod)
    pgod.start()
    pgod.wait_log(r"sd_notify READY=1 to .* failed")
    pgod.wait_log(r"pgod running")
    assert pgod.stop() == 0
