"""Attacks against a real pgod: by nobody with a key (a connection flood), by a team that
owns one repository and its keys (sessions on one connection, a refused commit that
redirects what running containers mount)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import subprocess
import sys
from pathlib import Path

import asyncssh

from tests.e2e import harness as h

FLOOD_NOFILE = 1024  # pgod's descriptors in the flood test (systemd gives it 65536)


def service(name: str, up: h.Upstream, **kw: object) -> dict[str, object]:
    return {"name": name, "user": h.USER, "repository": up.url, **kw}


def fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_connection_flood_without_a_key_leaves_the_services_running(
        base: Path, upstream: h.Upstream, projects: list[str], pgods: list[h.Pgod]) -> None:
    """Idle TCP connections to the SSH port, never logging in: pgod must keep enough file
    descriptors to fetch and deploy, and serve SSH again once the flood is gone."""
    name = h.unique("flood")
    projects.append(name)
    key = base / "id_team"
    h.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    upstream.write("ssh/team.pub", Path(f"{key}.pub").read_text())
    upstream.commit("key")
    pgod = h.Pgod(base, [service(name, upstream)], interval="1s")
    pgods.append(pgod.start())
    h.wait_until(lambda: h.container_ids(name), what="first deploy")
    assert pgod.proc is not None
    h.run("prlimit", f"--pid={pgod.proc.pid}", f"--nofile={FLOOD_NOFILE}:{FLOOD_NOFILE}")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # more than pgod may hold, and as many again waiting in the listen backlog to take
    # every descriptor a login timeout frees
    want = 2 * FLOOD_NOFILE + 200
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, want + 100)), hard))
    flood: list[socket.socket] = []
    try:
        for _ in range(want):  # connects that do not wait: a full backlog is the point
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", pgod.ssh_port))
            flood.append(s)
        # pgod has taken in what it takes: it closed the rest, or it is out of descriptors
        h.wait_until(lambda: pgod.count(r"connection\(s\) closed at once")
                     or fds(pgod.proc.pid) >= FLOOD_NOFILE - 8,  # type: ignore[union-attr]
                     what="pgod to take in the flood")
        upstream.write("compose.yaml", h.WEB.replace('"8080"]\n',
                                                     '"8080"]\n    environment: [V=2]\n'))
        new = upstream.commit("while flooded")
        # within the login timeout: before the flood's first connections are let go
        h.wait_until(lambda: pgod.state(name).get("applied_commit") == new, timeout=25,
                     what="the commit deployed during the flood")
    finally:
        for s in flood:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    r = h.run(h.PGOCTL, "-i", str(key), "-p", str(pgod.ssh_port), "--",
              f"127.0.0.1:{name}//ping", check=False,
              env={"PATH": "/usr/bin:/bin", "HOME": str(base),
                   "PGOCTL_KNOWN_HOSTS": str(base / "known")})
    assert r.returncode == 0 and "pong!" in r.stdout, r.stderr


def test_a_flood_from_one_address_leaves_everyone_else_served(
        base: Path, upstream: h.Upstream, projects: list[str], pgods: list[h.Pgod]) -> None:
    """From 127.0.0.2: silent connections, logins with a key no service holds, and idle
    logins with a key the attacker's own service holds, each reconnecting as soon as it is
    let go. Meanwhile a team's pgoctl and OpenSSH's ssh from 127.0.0.1 are answered; the
    unknown key is refused at authentication, the idle logins are closed, and the source's
    share of connections is bounded."""
    victim, attacker = h.unique("victim"), h.unique("attacker")
    projects += [victim, attacker]
    keys = {}
    for who in ("team", "mallory", "nobody"):
        keys[who] = base / f"id_{who}"
        h.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys[who]))
    upstream.write("ssh/team.pub", Path(f"{keys['team']}.pub").read_text())
    upstream.commit("key")
    theirs = h.Upstream(base, "attacker")
    theirs.write("compose.yaml", h.WEB)
    theirs.write("ssh/mallory.pub", Path(f"{keys['mallory']}.pub").read_text())
    theirs.commit("attacker")
    pgod = h.Pgod(base, [service(victim, upstream), service(attacker, theirs)],
                  interval="1h")
    pgods.append(pgod.start())
    for name in (victim, attacker):
        pgod.wait_log(rf"\[{name}\] reconcile \(start\) done")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(base),
           "PGOCTL_KNOWN_HOSTS": str(base / "known")}

    def pgoctl() -> subprocess.CompletedProcess[str]:
        return h.pgoctl(pgod, keys["team"], victim, "ping", timeout=120, env=env)

    def ssh() -> subprocess.CompletedProcess[str]:
        return h.run("ssh", "-F", "/dev/null", "-p", str(pgod.ssh_port), "-i",
                     str(keys["team"]), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                     "-o", f"UserKnownHostsFile={base / 'ssh_known'}",
                     "-o", "StrictHostKeyChecking=accept-new", "127.0.0.1", f"{victim}//ping",
                     check=False, timeout=120)

    flood = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("sshflood.py")), str(pgod.ssh_port),
         "127.0.0.2", str(keys["nobody"]), str(keys["mallory"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pgod.wait_log(r"connection\(s\) closed at once: .* from 127\.0\.0\.2: ")
        for _ in range(3):
            for client in (pgoctl, ssh):
                r = client()
                assert r.returncode == 0 and r.stdout.startswith("pong! - "), \
                    (client.__name__, r.returncode, r.stderr)
        h.wait_until(lambda: pgod.count(r"closing a connection from 127\.0\.0\.2: no request"),
                     what="pgod to close an idle login")
        assert flood.poll() is None, flood.communicate()
    finally:
        flood.terminate()
        out, err = flood.communicate(timeout=120)
    seen = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    assert seen.get("unknown_refused", 0) > 0 and not seen.get("unknown_let_in"), (seen, err)
    assert seen.get("idle_closed_by_pgod", 0) > 0 and not seen.get("idle_kept"), (seen, err)
    assert seen.get("raw_open", 0) > 0, (seen, err)
    # the flood is over: the attacker's own key still works, a key of nobody still does not
    r = h.run(h.PGOCTL, "-i", str(keys["nobody"]), "-p", str(pgod.ssh_port), "--",
              f"127.0.0.1:{victim}//ping", check=False, env=env)
    assert r.returncode == 255 and "the server refused the key" in r.stderr, r.stderr


def test_sessions_on_one_connection_are_limited(
        base: Path, upstream: h.Upstream, projects: list[str], pgods: list[h.Pgod]) -> None:
    """A key holder opens many channels on one connection, each following the logs (one
    compose process each): past the limit a request is refused, not run."""
    name = h.unique("chan")
    projects.append(name)
    key = asyncssh.generate_private_key("ssh-ed25519")
    upstream.write("ssh/team.pub", key.export_public_key().decode())
    upstream.commit("key")
    pgod = h.Pgod(base, [service(name, upstream)], interval="1h")
    pgods.append(pgod.start())
    h.wait_until(lambda: h.container_ids(name), what="first deploy")

    async def attack() -> list[int | None]:
        async with asyncssh.connect("127.0.0.1", pgod.ssh_port, username="mallory",
                                    client_keys=[key], known_hosts=None) as conn:
            followers = [await conn.create_process(f"{name}//logs -f web")
                         for _ in range(10)]
            extra = await conn.run(f"{name}//ping")
            for p in followers:
                p.close()
            while True:  # the slots are given back once pgod has ended the followers
                more = await conn.run(f"{name}//ping")
                if more.exit_status != extra.exit_status:
                    return [extra.exit_status, more.exit_status]
                await asyncio.sleep(0.2)

    extra, more = asyncio.run(asyncio.wait_for(attack(), 60))
    # 400 on the wire; asyncssh's client keeps its low 8 bits
    assert extra in (400, 400 & 0xFF) and more == 0, (extra, more)


CONF_RO = """\
services:
  web:
    image: pgoimg/busybox:1
    pull_policy: if_not_present
    restart: always
    command: ["sh", "-c", "sleep 1; exit 1"]
    volumes: ["./conf:/etc/app:ro"]
"""


def test_refused_commit_does_not_change_what_running_containers_mount(
        base: Path, upstream: h.Upstream, projects: list[str], pgods: list[h.Pgod]) -> None:
    """Commit 1 mounts ./conf read-only and restarts now and then; commit 2 makes conf a
    symlink to /. The policy refuses commit 2, but when it lies in the checkout, dockerd
    follows the symlink at the next restart of the old container: the host's / in it."""
    name = h.unique("swap")
    projects.append(name)
    upstream.write("compose.yaml", CONF_RO)
    upstream.write("conf/app.conf", "x\n")
    upstream.commit("conf")
    pgod = h.Pgod(base, [service(name, upstream)], interval="1s")
    pgods.append(pgod.start())
    h.wait_until(lambda: pgod.state(name).get("applied_commit") == upstream.head(),
                 what="first deploy")
    upstream.remove("conf")
    (upstream.work / "conf").symlink_to("/")
    bad = upstream.commit("conf is /")
    pgod.wait_log(rf"\[{name}\] commit {bad[:8]} refused \(policy\)")

    def started_again() -> int:
        c = h.containers(name, all=True)
        return int(h.inspect(c[0]["ID"])["RestartCount"]) if c else 0
    before = started_again()
    h.wait_until(lambda: started_again() >= before + 2, what="the old container restarted")
    cid = h.containers(name, all=True)[0]["ID"]

    def listing() -> str:
        with contextlib.suppress(AssertionError):
            r = h.run("docker", "exec", cid, "ls", "/etc/app", check=False)
            if r.returncode == 0:
                return r.stdout
        return ""
    seen = h.wait_until(listing, what="a listing of /etc/app in the running container")
    assert "app.conf" in seen.split(), f"the container sees the host: {seen.split()[:8]}"


def test_a_clone_again_does_not_bring_a_refused_commit_into_the_checkout(
        base: Path, upstream: h.Upstream, projects: list[str], pgods: list[h.Pgod]) -> None:
    """The same symlink swap, arriving while the checkout is damaged and cloned again: the
    new clone's files wait for the verdict, and the applied commit's files come back."""
    name = h.unique("reclone")
    projects.append(name)
    upstream.write("compose.yaml", CONF_RO)
    upstream.write("conf/app.conf", "x\n")
    good = upstream.commit("conf")
    pgod = h.Pgod(base, [service(name, upstream)], interval="1s")
    pgods.append(pgod.start())
    h.wait_until(lambda: pgod.state(name).get("applied_commit") == good, what="first deploy")
    pgod.stop()
    upstream.remove("conf")
    (upstream.work / "conf").symlink_to("/")
    bad = upstream.commit("conf is /")
    h.cleanup_dir(pgod.dir / name / ".git" / "objects")  # damaged: pgod clones it again
    pgod.start()
    pgod.wait_log(rf"\[{name}\] commit {bad[:8]} refused \(policy\)")
    pgod.wait_log(rf"\[{name}\] cloning")
    checkout = pgod.dir / name
    assert h.checkout_head(checkout) == good
    assert (checkout / "conf").is_dir() and not (checkout / "conf").is_symlink()
    assert (checkout / "conf" / "app.conf").read_text() == "x\n"
    assert pgod.state(name)["applied_commit"] == good


VOLUME = h.WEB + """    volumes: ["host:/h"]
volumes:
  host:
    driver_opts: {{type: none, o: bind, device: "{device}"}}
"""


def volumes(project: str) -> list[str]:
    return h.run("docker", "volume", "ls", "-q", "--filter",
                 f"label=com.docker.compose.project={project}").stdout.split()


def test_a_volume_with_a_relative_device_is_refused(
        base: Path, upstream: h.Upstream, projects: list[str], pgods: list[h.Pgod]) -> None:
    """dockerd takes a local volume's relative bind device from its own working directory
    (/ under systemd): `device: etc` gives the container the host's /etc, writable. With
    `deep` a committed symlink three levels down, `deep/../../../etc` once looked like the
    checkout's etc to the policy, and was the host's /etc to dockerd."""
    name = h.unique("dev")
    projects.append(name)
    upstream.write("compose.yaml", VOLUME.format(device="etc"))
    first = upstream.commit("relative device")
    pgod = h.Pgod(base, [service(name, upstream)], interval="1s")
    pgods.append(pgod.start())
    line = pgod.wait_log(rf"\[{name}\] commit {first[:8]} refused \(policy\)")
    assert "volume host binds 'etc', a relative path" in line and "[own-data]" in line, line
    upstream.write("src/a/b/README", "deep\n")
    (upstream.work / "deep").symlink_to("src/a/b")
    upstream.write("compose.yaml", VOLUME.format(device="deep/../../../etc"))
    second = upstream.commit("relative device behind a symlink")
    line = pgod.wait_log(rf"\[{name}\] commit {second[:8]} refused \(policy\)")
    assert "binds 'deep/../../../etc', a relative path" in line, line
    h.next_cycle(pgod, name)
    assert h.containers(name, all=True) == [] and volumes(name) == []


def test_a_volume_binding_the_checkouts_git_is_refused(
        base: Path, upstream: h.Upstream, projects: list[str], pgods: list[h.Pgod]) -> None:
    """A named volume binding the checkout's .git (or the checkout, which holds it), on a
    first deployment: the container could set remote.origin.uploadpack in .git/config, and
    pgod's next fetch would run it on the host as the service user."""
    name = h.unique("gitvol")
    projects.append(name)
    pgod = h.Pgod(base, [service(name, upstream)], interval="1s")
    checkout = pgod.dir / name
    upstream.write("compose.yaml", VOLUME.format(device=f"{checkout}/.git"))
    first = upstream.commit("the checkout's .git as a volume")
    pgods.append(pgod.start())
    line = pgod.wait_log(rf"\[{name}\] commit {first[:8]} refused \(policy\)")
    assert f"volume host binds {checkout}/.git, which holds the checkout's .git" in line, line
    upstream.write("compose.yaml", VOLUME.format(device=str(checkout)))
    second = upstream.commit("the whole checkout as a volume")
    pgod.wait_log(rf"\[{name}\] commit {second[:8]} refused \(policy\): .* binds "
                  rf"{checkout}, which holds the checkout's \.git")
    h.next_cycle(pgod, name)
    assert h.containers(name, all=True) == [] and volumes(name) == []
    assert "uploadpack" not in (checkout / ".git" / "config").read_text()
