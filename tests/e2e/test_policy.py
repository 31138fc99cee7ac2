"""The compose policy end to end: a real pgod refuses a push that reaches for the host and
keeps the last good deployment running; `pgod check --service` judges a directory with the
real compose tool (real dockerd, git and docker compose)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.e2e import harness as h

PRIVILEGED = h.WEB.replace('expose: ["8080"]\n', 'expose: ["8080"]\n    privileged: true\n')
PUBLISHED = h.WEB.replace('expose: ["8080"]\n', 'ports: ["127.0.0.1::8080"]\n')


def service(name: str, up: h.Upstream, **kw: object) -> dict[str, object]:
    return {"name": name, "user": h.USER, "repository": up.url, **kw}


def start(base: Path, pgods: list[h.Pgod], services: list[dict[str, object]]) -> h.Pgod:
    p = h.Pgod(base, services)
    pgods.append(p)
    return p.start()


def test_violating_push_is_refused_and_old_containers_keep_running(
        base: Path, upstream: h.Upstream, projects: list[str], pgods: list[h.Pgod]) -> None:
    name = h.unique()
    projects.append(name)
    pgod = start(base, pgods, [service(name, upstream)])
    good = upstream.head()
    first = h.wait_until(lambda: h.container_ids(name), what="first deploy")

    upstream.write("compose.yaml", PRIVILEGED)
    bad = upstream.commit("privileged")
    line = pgod.wait_log(rf"\[{name}\] commit {bad[:8]} refused \(policy\)")
    # the log names the commit, the compose service and the rule
    assert "compose service web: privileged" in line and "[own-privileges]" in line, line
    state = h.wait_until(lambda: (s := pgod.state(name)).get("verdict")
                         and s["verdict"]["commit"] == bad and s, what="the refusal in the state")
    assert state["verdict"]["kind"] == "policy", state
    assert any("privileged" in v for v in state["verdict"]["reasons"]), state
    assert state["applied_commit"] == good
    # the refused commit never reaches the checkout the running containers mount
    assert h.checkout_head(pgod.dir / name) == good
    # the old containers run on, untouched; the refusal is not judged again every cycle
    h.next_cycle(pgod, name, cycles=2)
    assert h.container_ids(name) == first
    assert not any(h.inspect(c)["HostConfig"]["Privileged"] for c in first)
    assert pgod.count(rf"commit {bad[:8]} refused") == 1

    # a new upstream commit is judged again, and a good one is deployed
    upstream.write("compose.yaml", h.WEB.replace('"8080"]\n', '"8080"]\n    environment: [V=4]\n'))
    fixed = upstream.commit("fix")
    pgod.wait_log(rf"\[{name}\] deploying commit {fixed[:8]}")
    h.wait_until(lambda: pgod.state(name).get("applied_commit") == fixed, what="applied")
    state = pgod.state(name)
    assert state["verdict"] is None


def test_refused_first_deployment_starts_nothing(
        base: Path, upstream: h.Upstream, projects: list[str], pgods: list[h.Pgod]) -> None:
    name = h.unique()
    projects.append(name)
    upstream.write("compose.yaml", PUBLISHED)
    bad = upstream.commit("published port")
    pgod = start(base, pgods, [service(name, upstream)])
    line = pgod.wait_log(rf"\[{name}\] commit {bad[:8]} refused \(policy\)")
    assert "compose service web: publishes ports" in line and "[no-ports]" in line, line
    h.next_cycle(pgod, name)
    assert h.containers(name, all=True) == []
    state = pgod.state(name)
    assert state["applied_commit"] == "" and state["verdict"]["commit"] == bad


# -- pgod check --service ---------------------------------------------------------------------

def check(cfg: Path, *args: str, user: str | None = None) -> tuple[int, list[str]]:
    argv = [h.PGOD, "check", "-c", str(cfg), *args]
    if user:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    r = h.run(*argv, check=False, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, (r.stdout + r.stderr).splitlines()


@pytest.fixture
def checkdirs(base: Path) -> tuple[Path, Path, Path]:
    """A config with one service (networks = ["proxy"]), an acceptable project directory and
    a refused one (a symlink committed next to the compose file leads to /etc)."""
    cfg = base / "pgo.toml"
    cfg.write_text(h.toml_service({"name": "team", "user": h.USER, "repository": "/x",
                                   "networks": ["proxy"]}))
    good, bad = base / "good", base / "bad"
    for d in (good, bad):
        (d / "conf").mkdir(parents=True)
    (good / "compose.yaml").write_text(
        h.WEB + '    volumes: ["./conf:/conf:ro", "${PGO_DATA}/db:/db"]\n'
        "    networks: [default, proxy]\nnetworks:\n  proxy:\n    external: true\n")
    (bad / "etc").symlink_to("/etc")
    (bad / "compose.yaml").write_text(
        h.WEB + '    volumes: ["./etc:/host-etc:ro"]\n    privileged: true\n'
        "    env_file: [./etc/passwd]\n"
        "  side:\n    image: pgoimg/busybox:1\n    network_mode: host\n"
        "    build: {context: ./conf, dockerfile_inline: 'FROM pgoimg/busybox:1'}\n")
    for p in (base, good, bad, good / "conf", bad / "conf", cfg):
        os.chmod(p, 0o755)
    return cfg, good, bad


def test_check_accepts_a_good_project(base: Path, checkdirs: tuple[Path, Path, Path]) -> None:
    cfg, good, _ = checkdirs
    rc, lines = check(cfg, "--datadir", str(base / "data"), "--service", "team", str(good))
    assert rc == 0, lines
    assert lines == ["team: accepted, 1 compose service(s)"]


def test_check_refuses_with_one_line_per_violation(checkdirs: tuple[Path, Path, Path]) -> None:
    cfg, _, bad = checkdirs
    rc, lines = check(cfg, "--service", "team", str(bad))
    assert rc == 1, lines
    assert all(line.startswith("team: compose service ") for line in lines), lines
    text = "\n".join(lines)
    assert re.search(r"compose service web: bind mount \S+/bad/etc \(really /etc\) is outside",
                     text), text
    assert "compose service web: privileged" in text
    assert "compose service side: network_mode host" in text
    assert "compose service side: joins no network of its own" in text
    # what compose itself would read on the host into the container, and a built image
    # that would replace the machine's base image
    assert re.search(r"compose service web: env_file \S+/bad/etc/passwd \(really "
                     r"/etc/passwd\) is outside", text), text
    assert "compose service side: build writes image pgoimg/busybox:1, not a name" in text


def test_check_refuses_a_name_another_services_urls_route_to(
        checkdirs: tuple[Path, Path, Path]) -> None:
    cfg, good, _ = checkdirs
    # shop's urls go to `web:8080` on the shared network; team's compose service `web` joins
    # that network too, so Docker's DNS would hand it part of shop's traffic
    cfg.write_text(cfg.read_text() + h.toml_service({
        "name": "shop", "user": h.USER, "repository": "/y",
        "urls": {"shop.example.org": "web:8080"}}))
    rc, lines = check(cfg, "--service", "team", str(good))
    assert rc == 1, lines
    assert lines == ["team: compose service web: answers to web on the shared network proxy, "
                     "the name the proxy sends service shop's urls to [own-networks]"]


def test_check_as_a_team_in_ci_runs_compose_as_itself(
        checkdirs: tuple[Path, Path, Path]) -> None:
    cfg, good, bad = checkdirs
    # not root, and the configured user need not exist where the team's CI runs
    cfg.write_text(cfg.read_text().replace(h.USER, "no-such-user-in-ci"))
    assert check(cfg, "--service", "team", str(good), user=h.USER)[0] == 0
    assert check(cfg, "--service", "team", str(bad), user=h.USER)[0] == 1
    # root runs compose as the service's user, which must exist
    rc, lines = check(cfg, "--service", "team", str(good))
    assert rc == 2 and len(lines) == 1 and "no-such-user-in-ci" in lines[0], lines


@pytest.mark.parametrize(("args", "text"), [
    (["--service", "nope", "{good}"], "no service 'nope'"),
    (["--service", "team"], "--service NAME and PATH go together"),
    (["{good}"], "--service NAME and PATH go together"),
    (["--service", "team", "{base}/missing"], "not a directory"),
    (["--service", "team", "{base}"], "no compose file"),
    (["--bogus"], "unrecognized arguments"),
])
def test_check_usage_errors_are_one_line_exit_2(
        base: Path, checkdirs: tuple[Path, Path, Path], args: list[str], text: str) -> None:
    cfg, good, _ = checkdirs
    rc, lines = check(cfg, *(a.format(good=good, base=base) for a in args))
    assert rc == 2 and len(lines) == 1 and text in lines[0], lines


def test_check_of_a_file_that_does_not_load_is_a_refusal(
        checkdirs: tuple[Path, Path, Path]) -> None:
    cfg, good, _ = checkdirs
    (good / "compose.yaml").write_text("services:\n  web:\n    image: [not, a, string]\n")
    rc, lines = check(cfg, "--service", "team", str(good))
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("team: compose file does not "
                                                                "load"), lines


def test_symlink_left_in_the_data_dir_is_judged_before_every_up(
        base: Path, upstream: h.Upstream, projects: list[str], pgods: list[h.Pgod]) -> None:
    """A container that can write its data directory could leave `logs -> /etc` there; the
    next up (here: after the stop file, same commit, judged long before) must not follow it."""
    name = h.unique()
    projects.append(name)
    upstream.write("compose.yaml", h.WEB + '    volumes: ["${PGO_DATA}/logs:/logs"]\n')
    commit = upstream.commit("logs in the data dir")
    pgod = start(base, pgods, [service(name, upstream)])
    h.wait_until(lambda: h.container_ids(name), what="first deploy")
    pgod.stopfile(name).touch()
    h.wait_until(lambda: not h.container_ids(name), what="the stop file to down it")
    logs = pgod.datadir / name / "logs"
    logs.rmdir()
    logs.symlink_to("/etc")  # what a container with its data mounted could have done
    pgod.stopfile(name).unlink()
    line = pgod.wait_log(rf"\[{name}\] commit {commit[:8]} refused \(policy\)")
    assert "really /etc" in line and "[own-data]" in line, line
    h.next_cycle(pgod, name)
    assert h.containers(name, all=True) == []
    assert pgod.count(rf"commit {commit[:8]} refused") == 1


def test_a_service_can_not_join_nor_make_another_services_network(
        base: Path, projects: list[str], pgods: list[h.Pgod]) -> None:
    """Two teams, `networks = []` (any shared network). The attacker joins the victim's
    default network as an external one, with the alias `db`; then makes a network of that
    name itself. Both are refused, whatever the list allows: the attacker would reach the
    victim's containers and answer for their names."""
    victim, attacker = h.unique("vic"), h.unique("att")
    projects += [victim, attacker]
    theirs, mine = h.Upstream(base, "victim"), h.Upstream(base, "attacker")
    theirs.write("compose.yaml", h.WEB)
    theirs.commit("the victim's web")
    mine.write("compose.yaml", h.WEB + "    networks:\n      default: {}\n"
               "      theirs: {aliases: [db]}\n"
               f"networks:\n  theirs:\n    external: true\n    name: {victim}_default\n")
    joins = mine.commit("join the victim's network as db")
    pgod = start(base, pgods, [service(victim, theirs), service(attacker, mine)])
    h.wait_until(lambda: h.container_ids(victim), what="the victim's deployment")
    line = pgod.wait_log(rf"\[{attacker}\] commit {joins[:8]} refused \(policy\)")
    assert f"network theirs is '{victim}_default', a network of service {victim}'s project" \
        in line and "[own-networks]" in line, line
    mine.write("compose.yaml", h.WEB + "    networks: [theirs]\n"
               f"networks:\n  theirs:\n    name: {victim}_default\n")
    makes = mine.commit("make a network by the victim's name")
    pgod.wait_log(rf"\[{attacker}\] commit {makes[:8]} refused \(policy\)")
    h.next_cycle(pgod, attacker)
    assert h.containers(attacker, all=True) == []
    net = h.run("docker", "network", "inspect", f"{victim}_default").stdout
    assert attacker not in net and victim in net


# -- operator exceptions (issue 14, item 5) ----------------------------------------------------

NET_ADMIN = h.WEB.replace('expose: ["8080"]\n', 'expose: ["8080"]\n    cap_add: [NET_ADMIN]\n')


def test_an_exception_lifts_its_rule_for_its_service_only(
        base: Path, projects: list[str], pgods: list[h.Pgod]) -> None:
    """One repository (a VPN's compose file with cap_add NET_ADMIN), two services: the one
    whose pgo.toml table allows the capability deploys it, and its container really has it
    (it may change its network namespace); the other is refused. //status shows it."""
    allowed, refused = h.unique("alw"), h.unique("ref")
    projects += [allowed, refused]
    key = base / "id_team"
    h.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    up = h.Upstream(base, "vpn")
    up.write("compose.yaml", NET_ADMIN)
    up.write("ssh/team.pub", Path(f"{key}.pub").read_text())
    commit = up.commit("a VPN needs NET_ADMIN")
    pgod = start(base, pgods, [service(allowed, up, allow=["cap_add:NET_ADMIN"]),
                               service(refused, up)])
    [cid] = h.wait_until(lambda: h.container_ids(allowed), what="the allowed deployment")
    caps = h.inspect(cid)["HostConfig"]["CapAdd"]
    assert [c.removeprefix("CAP_") for c in caps] == ["NET_ADMIN"], caps
    r = h.run("docker", "exec", cid, "ip", "link", "set", "lo", "mtu", "1400", check=False)
    assert r.returncode == 0, r.stderr
    line = pgod.wait_log(rf"\[{refused}\] commit {commit[:8]} refused \(policy\)")
    assert "compose service web: cap_add NET_ADMIN: a capability beyond Docker's default " \
        "set [own-privileges]" in line, line
    h.next_cycle(pgod, refused)
    assert h.containers(refused, all=True) == []
    status = h.run(h.PGOCTL, "-i", str(key), "-p", str(pgod.ssh_port), "--",
                   f"127.0.0.1:{allowed}//status", check=False,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(base),
                        "PGOCTL_KNOWN_HOSTS": str(base / "known")})
    assert status.returncode == 0, status.stderr
    assert "allowed:    cap_add:NET_ADMIN\n" in status.stdout, status.stdout


def test_check_shows_the_exceptions_it_applied(
        base: Path, checkdirs: tuple[Path, Path, Path]) -> None:
    cfg, good, _ = checkdirs
    (good / "compose.yaml").write_text(
        NET_ADMIN + '    volumes: ["/etc/localtime:/etc/localtime:ro"]\n'
        "    networks: [default, proxy]\nnetworks:\n  proxy:\n    external: true\n")
    cfg.write_text(cfg.read_text().replace(
        'networks = ["proxy"]', 'networks = ["proxy"]\nallow = ["cap_add:NET_ADMIN", '
        '"port:53/udp"]'))
    rc, lines = check(cfg)
    assert rc == 0 and lines[1:] == ["team: allowed cap_add:NET_ADMIN, port:53/udp"], lines
    rc, lines = check(cfg, "--service", "team", str(good))
    assert rc == 0, lines
    assert lines == [
        "team: allowed by cap_add:NET_ADMIN: compose service web: cap_add NET_ADMIN: a "
        "capability beyond Docker's default set [own-privileges]",
        "team: allow port:53/udp: not needed by this project",
        "team: accepted, 1 compose service(s)"]
    cfg.write_text(cfg.read_text().replace('"port:53/udp"', '"port:53/icmp"'))
    rc, lines = check(cfg)
    assert rc == 2 and lines == [
        f"{cfg}: service team: key 'allow': entry 'port:53/icmp': must be port:PORT or "
        "port:PORT/PROTO (a port 1-65535; tcp, udp or sctp)"], lines
