"""The compose policy: refused and accepted cases side by side, per principle.

Three layers: models as the compose tool prints them from the files in tests/policy-testdata/
(one file per case, the expected outcome in its first line, the operator's exceptions for it,
if any, in a `# allow: ENTRY...` line among its first three; needs the compose binary, not
dockerd), the pure policy on hand-written model dicts (both compose v2's and v1's shapes), and
property tests on path spellings.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgo import compose
from pgo.allow import Allow
from pgo.allow import parse as parse_allow
from pgo.compose import Model
from pgo.errors import ComposeError
from pgo.policy import (
    DATA,
    NAMES,
    NAMESPACES,
    NETWORKS,
    PORTS,
    PRIVILEGES,
    UNKNOWN,
    Unresolvable,
    Violation,
    judge,
)
from pgo.runner import Runner

TESTDATA = Path(__file__).resolve().parents[1] / "policy-testdata"
SERVICE = "polsvc"
DATADIR = Path("/srv/pgo-data") / SERVICE
CHECKOUT = "/var/lib/pgo/polsvc"
NETS = ("proxy",)


# -- real compose models from tests/policy-testdata ------------------------------------------

def _has_v2() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True,
                          check=False).returncode == 0


HAS_V2 = _has_v2()
HAS_V1 = shutil.which("docker-compose") is not None
CASES = sorted(TESTDATA.glob("*.yml"))
V1_CASES = [p for p in CASES if "# v1: yes" in p.read_text().splitlines()[:3]]


def expected(path: Path) -> str | None:
    """The rule a case must break (None: it must be accepted), from `# expect: ...`."""
    words = path.read_text().splitlines()[0].split()
    assert words[:2] == ["#", "expect:"], f"{path.name}: first line must be `# expect: ...`"
    return words[3] if words[2] == "refused" else None


def allowed(path: Path) -> list[Allow]:
    """The operator's exceptions a case is judged with, from `# allow: ENTRY...`."""
    for line in path.read_text().splitlines()[:3]:
        if line.startswith("# allow:"):
            return [parse_allow(e) for e in line.removeprefix("# allow:").split()]
    return []


def load(checkout: Path, data: Path, binary: tuple[str, ...] = compose.V2,
         compose_file: str | None = None) -> Model:
    """The model as pgod loads it: the real compose tool, the deploy's environment."""
    project = compose.Project(SERVICE, checkout, Runner(), None, binary=binary,
                              compose_file=compose_file,
                              env={"PGO_DATA": str(data), "PGO_SERVICE": SERVICE})
    return asyncio.run(project.config())


def compose_model(path: Path, binary: tuple[str, ...]) -> Model:
    try:
        return load(path.parent, DATADIR, binary, path.name)
    except ComposeError as e:
        raise AssertionError(f"{path.name} does not load: {e}") from None


def assert_outcome(name: str, want: str | None, found: list[Violation]) -> None:
    if want is None:
        assert found == [], f"{name}: a legitimate file was refused: {[str(v) for v in found]}"
    else:
        assert want in {v.rule for v in found}, \
            f"{name}: expected a {want} violation, got {[str(v) for v in found]}"


@pytest.mark.skipif(not HAS_V2, reason="needs `docker compose` (v2)")
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_testdata_compose_v2(path: Path) -> None:
    model = compose_model(path, compose.V2)
    found = judge(model, SERVICE, "team", NETS, TESTDATA, DATADIR, allow=allowed(path))
    assert_outcome(path.name, expected(path), found)


@pytest.mark.skipif(not HAS_V1, reason="needs `docker-compose` (v1)")
@pytest.mark.parametrize("path", V1_CASES, ids=[p.stem for p in V1_CASES])
def test_testdata_compose_v1(path: Path) -> None:
    model = compose_model(path, compose.V1)
    found = judge(model, SERVICE, "team", NETS, TESTDATA, DATADIR, allow=allowed(path))
    assert_outcome(path.name, expected(path), found)


def test_testdata_covers_every_rule() -> None:
    wanted = {expected(p) for p in CASES}
    assert {DATA, NAMES, NAMESPACES, PRIVILEGES, PORTS, NETWORKS, None} <= wanted


# -- the pure policy on model dicts ----------------------------------------------------------

def lexical(path: str) -> str:
    """A text-only resolver: where a path leads by its spelling alone (no file system)."""
    return "/" + posixpath.normpath(path).lstrip("/")


def check(m: dict[str, Any], networks: tuple[str, ...] = NETS, user: str = "team",
          **kw: Any) -> list[Violation]:
    """The policy on a hand-written model, paths judged by their spelling."""
    return judge(Model("", m), SERVICE, user, networks, Path(CHECKOUT), DATADIR,
                 others=(), resolve=lexical, **kw)


def model(svc: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    base = {"image": "local/busybox:1"}
    return {"name": SERVICE, "services": {"app": {**base, **(svc or {})}}, **top}


def two(svc: dict[str, Any]) -> dict[str, Any]:
    """A model of `app` and `vpn`, whose container is named polsvc-vpn."""
    m = model(svc)
    m["services"]["vpn"] = {"image": "local/busybox:1", "container_name": "polsvc-vpn"}
    return m


def bind(source: str, target: str = "/x", **kw: Any) -> dict[str, Any]:
    return {"type": "bind", "source": source, "target": target, **kw}


# (case, model, rule that must be broken, or None: accepted). Side by side per principle.
TABLE: list[tuple[str, dict[str, Any], str | None]] = [
    # own data
    ("bind in data", model({"volumes": [bind(f"{DATADIR}/db")]}), None),
    ("bind is the data dir", model({"volumes": [bind(str(DATADIR))]}), None),
    ("bind in checkout", model({"volumes": [bind(f"{CHECKOUT}/conf")]}), None),
    ("bind relative to checkout", model({"volumes": [bind("conf")]}), None),
    ("bind sibling of data", model({"volumes": [bind(f"{DATADIR}-other")]}), DATA),
    ("bind parent of data", model({"volumes": [bind(str(DATADIR.parent))]}), DATA),
    ("bind docker socket", model({"volumes": [bind("/var/run/docker.sock")]}), DATA),
    ("bind with no source", model({"volumes": [{"type": "bind", "target": "/x"}]}), DATA),
    ("v1 bind string inside", model({"volumes": [f"{CHECKOUT}/conf:/c:ro"]}), None),
    ("v1 bind string outside", model({"volumes": ["/etc:/etc2:rw"]}), DATA),
    ("v1 anonymous", model({"volumes": ["/anon"]}), None),
    ("v1 named own", model({"volumes": ["db:/db:rw"]}, volumes={"db": None}), None),
    ("v1 named undeclared", model({"volumes": ["othersvc_db:/db:rw"]}), DATA),
    ("tmpfs mount", model({"volumes": [{"type": "tmpfs", "target": "/t"}]}), None),
    ("cluster mount", model({"volumes": [{"type": "cluster", "source": "c", "target": "/t"}]}),
     DATA),
    ("mount unknown key", model({"volumes": [bind("conf", weird=True)]}), UNKNOWN),
    ("volume own default name", model(volumes={"db": {}}), None),
    ("volume named by the project", model(volumes={"db": {"name": f"{SERVICE}_db"}}), None),
    ("volume named like another", model(volumes={"db": {"name": "other_db"}}), DATA),
    ("v1 external volume", model(volumes={"db": {"external": True, "name": "db"}}), DATA),
    ("external: {name} form", model(volumes={"db": {"external": {"name": "x"}}}), DATA),
    ("volume bind in data", model(volumes={"d": {"driver_opts": {
        "type": "none", "o": "bind", "device": f"{DATADIR}/d"}}}), None),
    ("volume bind outside", model(volumes={"d": {"driver_opts": {
        "type": "none", "o": "bind", "device": "/"}}}), DATA),
    ("volume o=bind among options", model(volumes={"d": {"driver_opts": {
        "o": "ro,bind", "device": "/etc"}}}), DATA),
    ("volume tmpfs", model(volumes={"d": {"driver_opts": {
        "type": "tmpfs", "device": "tmpfs", "o": "size=1m"}}}), None),
    ("volume cifs", model(volumes={"d": {"driver_opts": {
        "type": "cifs", "device": "//srv/share", "o": "username=x"}}}), DATA),
    ("secret file outside", model(secrets={"s": {"file": "/root/.ssh/id_rsa"}}), DATA),
    ("secret file inside", model(secrets={"s": {"file": f"{CHECKOUT}/s.txt"}}), None),
    ("secret from environment", model(secrets={"s": {"environment": "TOKEN"}}), None),
    ("config file outside", model(configs={"c": {"file": "/etc/passwd"}}), DATA),
    ("time zone read-write", model({"volumes": [bind("/etc/localtime")]}), DATA),
    ("zone data and `..`", model({"volumes": [bind("/usr/share/zoneinfo/../../../etc",
                                                   read_only=True)]}), DATA),
    ("other /etc read-only", model({"volumes": ["/etc/passwd:/etc/timezone:ro"]}), DATA),
    # own namespaces
    ("network_mode host", model({"network_mode": "host"}), NAMESPACES),
    ("network_mode container", model({"network_mode": "container:abc"}), NAMESPACES),
    ("network_mode other service", model({"network_mode": "service:nope"}), NAMESPACES),
    ("network_mode container of the project", two({"network_mode": "container:polsvc-vpn",
                                                   "depends_on": ["vpn"]}), None),
    ("network_mode container, v2's depends_on", two({
        "network_mode": "container:polsvc-vpn",
        "depends_on": {"vpn": {"condition": "service_started", "required": True}}}), None),
    ("network_mode container, no depends_on", two({"network_mode": "container:polsvc-vpn"}),
     NAMESPACES),
    ("network_mode container, optional depends_on", two({
        "network_mode": "container:polsvc-vpn",
        "depends_on": {"vpn": {"condition": "service_started", "required": False}}}),
     NAMESPACES),
    ("ipc container of the project", two({"ipc": "container:polsvc-vpn",
                                          "depends_on": ["vpn"]}), None),
    ("uts container of the project", two({"uts": "container:polsvc-vpn",
                                          "depends_on": ["vpn"]}), NAMESPACES),
    ("pid host", model({"pid": "host"}), NAMESPACES),
    ("pid own service", model({"pid": "service:app"}), None),
    ("ipc shareable", model({"ipc": "shareable"}), None),
    ("ipc private", model({"ipc": "private"}), None),
    ("ipc container", model({"ipc": "container:x"}), NAMESPACES),
    ("uts host", model({"uts": "host"}), NAMESPACES),
    ("userns host", model({"userns_mode": "host"}), NAMESPACES),
    ("cgroup host", model({"cgroup": "host"}), NAMESPACES),
    ("cgroup private", model({"cgroup": "private"}), None),
    ("volumes_from own service", model({"volumes_from": ["app:ro"]}), None),
    ("v1 volumes_from service", model({"volumes_from": ["service:app:rw"]}), None),
    ("volumes_from container", model({"volumes_from": ["container:db"]}), NAMESPACES),
    ("volumes_from unknown", model({"volumes_from": ["db"]}), NAMESPACES),
    ("propagation rslave", model({"volumes": [bind("c", bind={"propagation": "rslave"})]}),
     None),
    ("propagation shared", model({"volumes": [bind("c", bind={"propagation": "shared"})]}),
     NAMESPACES),
    ("v1 propagation rshared", model({"volumes": [f"{CHECKOUT}/c:/c:rw,rshared"]}),
     NAMESPACES),
    ("external_links", model({"external_links": ["db"]}), NAMESPACES),
    ("build network host", model({"build": {"context": ".", "network": "host"}}), NAMESPACES),
    ("build network none", model({"build": {"context": ".", "network": "none"},
                                  "image": "polsvc-app"}), None),
    # own privileges
    ("privileged", model({"privileged": True}), PRIVILEGES),
    ("privileged false", model({"privileged": False}), None),
    ("privileged as string", model({"privileged": "true"}), PRIVILEGES),
    ("cap_add default cap", model({"cap_drop": ["ALL"], "cap_add": ["net_bind_service"]}), None),
    ("cap_add NET_ADMIN", model({"cap_add": ["NET_ADMIN"]}), PRIVILEGES),
    ("cap_add BPF", model({"cap_add": ["cap_bpf"]}), PRIVILEGES),
    ("devices", model({"devices": [{"source": "/dev/fuse", "target": "/dev/fuse"}]}),
     PRIVILEGES),
    ("devices empty", model({"devices": []}), None),
    ("security_opt no-new-privileges", model({"security_opt": ["no-new-privileges:true"]}),
     None),
    ("security_opt apparmor profile", model({"security_opt": ["apparmor:my-loose"]}),
     PRIVILEGES),
    ("security_opt label type", model({"security_opt": ["label=type:spc_t"]}), PRIVILEGES),
    ("security_opt writable cgroups", model({"security_opt": ["writable-cgroups=true"]}),
     PRIVILEGES),
    ("sysctls net list form", model({"sysctls": ["net.ipv4.ip_forward=1"]}), None),
    ("sysctls fs", model({"sysctls": {"fs.protected_symlinks": "0"}}), PRIVILEGES),
    ("oom_score_adj 0", model({"oom_score_adj": 0}), None),
    ("oom_score_adj -1", model({"oom_score_adj": -1}), PRIVILEGES),
    ("runtime runc", model({"runtime": "runc"}), None),
    ("runtime kata", model({"runtime": "kata"}), PRIVILEGES),
    ("isolation default", model({"isolation": "default"}), None),
    ("use_api_socket", model({"use_api_socket": True}), PRIVILEGES),
    ("use_api_socket false", model({"use_api_socket": False}), None),
    ("provider", model({"provider": {"type": "model"}}), PRIVILEGES),
    ("service models", model({"models": ["llm"]}), PRIVILEGES),
    ("top-level models", model(models={"llm": {"model": "ai/x"}}), PRIVILEGES),
    ("pre_stop privileged", model({"pre_stop": [{"command": "x", "privileged": True}]}),
     PRIVILEGES),
    ("develop watch exec privileged", model({"develop": {"watch": [
        {"path": ".", "action": "sync+exec", "exec": {"command": "x", "privileged": True}}]}}),
     PRIVILEGES),
    ("develop watch", model({"develop": {"watch": [{"path": ".", "action": "rebuild"}]}}), None),
    ("deploy limits", model({"deploy": {"resources": {"limits": {"cpus": "1"}}}}), None),
    ("ulimit rtprio in hard", model({"ulimits": {"rtprio": {"soft": 0, "hard": 1}}}),
     PRIVILEGES),
    ("ulimit nice above the host's", model({"ulimits": {"nice": 40}}), PRIVILEGES),
    ("ulimit nice 20 (nice 0)", model({"ulimits": {"nice": 20}}), None),
    ("ulimit rttime", model({"ulimits": {"rttime": -1}}), None),
    ("ulimit memlock 64 KiB", model({"ulimits": {"memlock": 65536}}), None),
    ("ulimit memlock within deploy limits", model({"ulimits": {"memlock": -1}, "deploy": {
        "resources": {"limits": {"memory": "1g"}}}}), None),
    ("ulimit nofile", model({"ulimits": {"nofile": {"soft": 1024, "hard": 1048576}}}), None),
    ("ulimit not a number", model({"ulimits": {"nofile": "lots"}}), UNKNOWN),
    ("build ulimit rtprio", model({"build": {"context": ".", "ulimits": {"rtprio": 50}},
                                   "image": "polsvc-app"}), PRIVILEGES),
    ("build ulimit memlock (no limit counts it)", model({
        "build": {"context": ".", "ulimits": {"memlock": -1}}, "image": "polsvc-app",
        "mem_limit": "1g"}), PRIVILEGES),
    ("cgroup_parent", model({"cgroup_parent": "machine.slice"}), PRIVILEGES),
    ("credential_spec", model({"credential_spec": {"file": "x.json"}}), PRIVILEGES),
    ("build dockerfile on the host, git context", model({"build": {
        "context": "git@github.com:o/r.git", "dockerfile": "/etc/passwd"},
        "image": "polsvc-app"}), DATA),
    ("build dockerfile in a remote context", model({"build": {
        "context": "https://github.com/o/r.git", "dockerfile": "docker/Dockerfile"},
        "image": "polsvc-app"}), None),
    ("build entitlements", model({"build": {"context": ".", "entitlements": ["network.host"]}}),
     PRIVILEGES),
    # ports
    ("ports", model({"ports": [{"target": 80, "published": "80"}]}), PORTS),
    ("expose", model({"expose": ["80"]}), None),
    ("ports empty", model({"ports": []}), None),
    # own networks
    ("default network", model(), None),
    ("listed external network and own", model({"networks": {"default": None, "proxy": None}},
                                              networks={"default": {"name": "polsvc_default"},
                                                        "proxy": {"external": True}}), None),
    ("only the listed external network", model({"networks": {"proxy": None}},
                                               networks={"proxy": {"external": True}}), NETWORKS),
    ("unlisted external network", model({"networks": ["default", "other"]},
                                        networks={"other": {"external": True}}), NETWORKS),
    ("network named like another project's", model(networks={"n": {"name": "web"}}), NETWORKS),
    ("network ipvlan", model(networks={"n": {"driver": "ipvlan"}}), NETWORKS),
    ("network gateway mode routed", model(networks={"n": {"driver_opts": {
        "com.docker.network.bridge.gateway_mode_ipv4": "routed"}}}), NETWORKS),
    ("network ipam plugin", model(networks={"n": {"ipam": {"driver": "x"}}}), NETWORKS),
    ("network_mode none", model({"network_mode": "none"}), None),
    ("network_mode own service", model({"network_mode": "service:app"}), None),
    ("network_mode named network", model({"network_mode": "proxy"}), NETWORKS),
    ("undeclared network", model({"networks": ["ghost"]}), NETWORKS),
    ("log driver local", model({"logging": {"driver": "local"}}), None),
    ("log driver syslog", model({"logging": {"driver": "syslog"}}), None),
    ("log driver syslog address", model({"logging": {"driver": "syslog", "options": {
        "syslog-address": "tcp://127.0.0.1:22"}}}), NETWORKS),
    ("log driver fluentd", model({"logging": {"driver": "fluentd"}}), NETWORKS),
    # what the policy does not know is not let through
    ("unknown service key", model({"new_escape_hatch": True}), UNKNOWN),
    ("unknown top-level key", model(plugins={"x": {}}), UNKNOWN),
    ("unknown volume key", model(volumes={"d": {"host_path": "/"}}), UNKNOWN),
    ("unknown build key", model({"build": {"context": ".", "host_access": True}}), UNKNOWN),
    ("extensions are ignored", model({"x-anything": {"privileged": True}},
                                     **{"x-pgo": {"reload": False}}), None),
]


@pytest.mark.parametrize(("case", "m", "want"), TABLE, ids=[t[0] for t in TABLE])
def test_policy_table(case: str, m: dict[str, Any], want: str | None) -> None:
    assert_outcome(case, want, check(m))


def test_empty_networks_list_allows_any_shared_network() -> None:
    m = model({"networks": ["proxy"]}, networks={"proxy": {"external": True}})
    assert check(m, networks=()) == []
    assert check(model({"network_mode": "bridge"}), networks=()) == []
    m = model(networks={"h": {"external": True, "name": "host"}})
    assert {v.rule for v in check(m, networks=())} == {NAMESPACES}


def test_root_bypasses_the_policy() -> None:
    m = model({"privileged": True, "network_mode": "host", "volumes": ["/:/host"]})
    assert check(m, user="root") == []
    assert judge(Model("", m), SERVICE, "root", (), Path(CHECKOUT), DATADIR) == []
    assert judge(Model("", m), SERVICE, "team", (), Path(CHECKOUT), DATADIR) != []


def test_violation_names_compose_service_and_rule() -> None:
    [v] = check(model({"privileged": True}))
    assert (v.compose_service, v.rule) == ("app", PRIVILEGES)
    assert str(v).startswith("compose service app: privileged")
    assert str(v).endswith(f"[{PRIVILEGES}]")
    [v] = check(model(secrets={"s": {"file": "/etc/shadow"}}))
    assert str(v).startswith("project: secret s file /etc/shadow is outside")


def test_messages_say_how_to_fix_it() -> None:
    """Every refusal of a host path says where the service's data is; the others say what
    to write instead (issue 14, item 4)."""
    def one(svc: dict[str, Any], **top: Any) -> str:
        [v] = check(model(svc, **top))
        return v.message
    assert one({"volumes": [bind("/srv/media", read_only=True)]}) == (
        "bind mount /srv/media is outside the service's data and checkout; keep data under "
        f"${{PGO_DATA}} (here {DATADIR}), or ask the operator to allow it "
        '(allow = ["bind:/srv/media:ro"])')
    assert one({"volumes": ["/etc/localtime:/etc/localtime"]}) == (
        "bind mount /etc/localtime is outside the service's data and checkout; keep data "
        f"under ${{PGO_DATA}} (here {DATADIR}); the host's time zone only read-only "
        "(/etc/localtime:/etc/localtime:ro)")
    assert one({"env_file": ["/etc/os-release"]}) == (
        "env_file /etc/os-release is outside the service's data and checkout; keep data "
        f"under ${{PGO_DATA}} (here {DATADIR})")
    assert one({"runtime": "kata"}) == "runtime kata: only runc is allowed"
    assert one({"network_mode": "container:othersvc-web-1"}) == (
        "network_mode container:othersvc-web-1: not a container of this project; to share "
        "the namespace of a service of this project, use `service:X`")
    [v] = check(two({"network_mode": "container:polsvc-vpn"}))
    assert v.message == (
        "network_mode container:polsvc-vpn: compose service vpn's container, but compose may "
        "start this one first, beside another container of that name; use `service:vpn` "
        "(or depend on vpn)")
    # the nested bind: which mount to make read-only
    assert one({"volumes": [bind(f"{DATADIR}/site", "/site"),
                            bind(f"{DATADIR}/site/conf", "/conf", read_only=True)]}) == (
        f"bind mount {DATADIR}/site/conf lies inside {DATADIR}/site, which compose service "
        f"app's bind mount {DATADIR}/site:/site may write: it could put a symlink on the way "
        f"before the next start; make that mount read-only ({DATADIR}/site:/site:ro), or use "
        f"sibling directories under ${{PGO_DATA}} (here {DATADIR})")


def test_the_time_zone_is_judged_where_it_really_leads() -> None:
    """/etc/localtime is accepted read-only because it leads into the zone data; where the
    host made it a symlink to anything else, it is not the time zone. It must be a file that
    is there: dockerd would make a missing one on the host (as a directory)."""
    zone = "/usr/share/zoneinfo/Europe/Amsterdam"

    def judged(source: str, target: str, files: tuple[str, ...] = (zone,)) -> set[str]:
        def resolve(path: str) -> str:
            p = lexical(path)
            return target if p == source else p

        def read(path: str) -> bytes | None:
            if path == "/usr/share/zoneinfo/Europe":
                raise Unresolvable(f"{path}: not a regular file")
            return b"TZif2" if path in files else None
        m = model({"volumes": [f"{source}:/etc/localtime:ro"]})
        found = judge(Model("", m), SERVICE, "team", NETS, Path(CHECKOUT), DATADIR,
                      others=(), resolve=resolve, read=read)
        return {v.rule for v in found}
    assert judged("/etc/localtime", zone) == set()
    assert judged("/etc/localtime", "/etc/localtime", ("/etc/localtime",)) == set()
    assert judged("/etc/timezone", "/etc/timezone", ("/etc/timezone",)) == set()
    assert judged(zone, zone) == set()
    assert judged("/etc/localtime", "/etc/shadow", ("/etc/shadow",)) == {DATA}
    assert judged("/etc/localtime", "/usr/share/zoneinfo-old/UTC") == {DATA}
    assert judged("/etc/localtime", "/usr/share/zoneinfo/Mars") == {DATA}  # not there
    assert judged("/etc/timezone", "/etc/timezone", ()) == {DATA}  # dockerd would make it
    assert judged("/usr/share/zoneinfo/Europe", "/usr/share/zoneinfo/Europe") == {DATA}
    # and only as written: a symlink of the checkout's into the zone data is the checkout's
    assert judged(f"{CHECKOUT}/tz", zone) == {DATA}


# -- real paths: the one resolver -------------------------------------------------------------

def real(m: dict[str, Any], checkout: Path, data: Path) -> list[Violation]:
    return judge(Model("", m), SERVICE, "team", (), checkout, data)


def test_symlink_left_in_the_data_dir_is_followed(tmp_path: Path) -> None:
    checkout, data = tmp_path / "co", tmp_path / "data" / SERVICE
    checkout.mkdir()
    data.mkdir(parents=True)
    (data / "db").mkdir()
    (data / "logs").symlink_to("/etc")  # as a container with the data mounted could
    ok = model({"volumes": [bind(str(data / "db"))]})
    assert real(ok, checkout, data) == []
    bad = model({"volumes": [bind(str(data / "logs" / "nginx"))]})
    [v] = real(bad, checkout, data)
    assert v.rule == DATA and "really /etc/nginx" in v.message


def test_checkout_reached_through_a_symlink_is_still_inside(tmp_path: Path) -> None:
    real_co = tmp_path / "real-checkout"
    (real_co / "conf").mkdir(parents=True)
    link = tmp_path / "checkout"
    link.symlink_to(real_co)
    m = model({"volumes": [bind(str(link / "conf")), bind(str(real_co / "conf"))]})
    assert real(m, link, tmp_path / "data") == []


def test_dotdot_is_taken_after_the_symlink_before_it(tmp_path: Path) -> None:
    """`deep/..` where deep is a symlink: the kernel goes to the parent of its target."""
    checkout = tmp_path / "co"
    (checkout / "a" / "b").mkdir(parents=True)
    (checkout / "deep").symlink_to(checkout / "a" / "b")
    m = model({"volumes": [bind(str(checkout / "deep" / ".." / ".." / ".."))]})
    [v] = real(m, checkout, tmp_path / "data")
    assert v.rule == DATA and f"really {tmp_path}" in v.message
    # by its spelling alone it would be the checkout's parent's parent: the same verdict
    # for another reason; one `..` less is the checkout by the file system, not by spelling
    m = model({"volumes": [bind(str(checkout / "deep" / ".." / ".."), read_only=True)]})
    assert real(m, checkout, tmp_path / "data") == []


def test_a_path_that_can_not_be_followed_is_refused(tmp_path: Path) -> None:
    checkout = tmp_path / "co"
    checkout.mkdir()
    (checkout / "loop").symlink_to("loop")
    [v] = real(model({"volumes": [bind(str(checkout / "loop" / "x"))]}), checkout, tmp_path)
    assert v.rule == DATA and "can not be followed" in v.message

    def unreadable(path: str) -> str:
        raise Unresolvable("permission denied")
    found = judge(Model("", model({"volumes": [bind(f"{CHECKOUT}/conf")]})), SERVICE, "team",
                  (), Path(CHECKOUT), DATADIR, others=(), resolve=unreadable)
    assert [v.rule for v in found] == [DATA]
    assert "can not be followed (permission denied)" in found[0].message


@pytest.mark.skipif(not HAS_V2, reason="needs `docker compose` (v2)")
def test_env_file_under_pgo_data_is_judged_where_it_leads(tmp_path: Path) -> None:
    """The hole: `env_file: ${PGO_DATA}/app.env` where a container left app.env as a
    symlink to a host file: compose, as the service user, would read that file into the
    container's environment."""
    checkout, data = tmp_path / "co", tmp_path / "data" / SERVICE
    checkout.mkdir()
    data.mkdir(parents=True)
    (checkout / "compose.yaml").write_text(
        "services:\n  app:\n    image: local/busybox:1\n"
        "    env_file: ['${PGO_DATA}/app.env', {path: './$PGO_SERVICE.env', required: false}]\n")
    (data / "app.env").symlink_to("/etc/passwd")
    [v] = judge(load(checkout, data), SERVICE, "team", (), checkout, data)
    assert v.rule == DATA and f"env_file {data}/app.env (really /etc/passwd)" in v.message
    (data / "app.env").unlink()
    (data / "app.env").write_text("A=1\n")
    model = load(checkout, data)
    assert model.data["services"]["app"]["env_file"] == [f"{data}/app.env",
                                                          f"{checkout}/{SERVICE}.env"]
    assert judge(model, SERVICE, "team", (), checkout, data) == []


@pytest.mark.skipif(not HAS_V2, reason="needs `docker compose` (v2)")
def test_env_file_paths_are_interpolated_as_compose_does(tmp_path: Path) -> None:
    """`${FZ_INSTALL_DIR:-.}/.env` (issue 14, item 3): compose itself interpolates the path,
    with the environment it used for the project (pgod's variables, the checkout's .env, a
    team's file: whatever it says, the path is then judged where it leads)."""
    checkout, data = tmp_path / "co", tmp_path / "data" / SERVICE
    (checkout / "conf").mkdir(parents=True)
    data.mkdir(parents=True)
    (checkout / "compose.yaml").write_text(
        "services:\n  app:\n    image: local/busybox:1\n    env_file:\n"
        "      - {path: '${FZ_INSTALL_DIR:-.}/app.env', required: false}\n"
        "      - {path: '${PGO_DATA}/${NAME-x}.env', required: false}\n")

    def env_files() -> tuple[list[str], list[Violation]]:
        model = load(checkout, data)
        return (model.data["services"]["app"]["env_file"],
                judge(model, SERVICE, "team", (), checkout, data))
    assert env_files() == ([f"{checkout}/app.env", f"{data}/x.env"], [])
    (checkout / ".env").write_text("FZ_INSTALL_DIR=conf\nNAME=y\nPGO_DATA=/etc\n")
    assert env_files() == ([f"{checkout}/conf/app.env", f"{data}/y.env"], [])
    (checkout / ".env").write_text("FZ_INSTALL_DIR=/etc\n")
    paths, [v] = env_files()
    assert paths[0] == "/etc/app.env" and v.rule == DATA and "is outside" in v.message
    # an include brings files compose interpolates with their own environment: not guessed
    (checkout / ".env").unlink()
    (checkout / "inc.yaml").write_text("services:\n  db:\n    image: local/busybox:1\n")
    text = (checkout / "compose.yaml").read_text()
    (checkout / "compose.yaml").write_text("include: [inc.yaml]\n" + text)
    paths, found = env_files()
    assert [v.rule for v in found] == [DATA, DATA]
    assert found[0].message.startswith(f"env_file {checkout}/${{FZ_INSTALL_DIR:-.}}/app.env: "
                                       "pgod could not interpolate this path as compose does")
    # (but for pgod's own variables, which win over any .env)
    (checkout / "compose.yaml").write_text(
        "include: [inc.yaml]\nservices:\n  app:\n    image: local/busybox:1\n"
        "    env_file: [{path: '${PGO_DATA}/a.env', required: false}]\n")
    assert env_files() == ([f"{data}/a.env"], [])


# -- the files compose reads to build the model ------------------------------------------------

@pytest.mark.skipif(not HAS_V2, reason="needs `docker compose` (v2)")
def test_the_files_compose_reads_for_the_model_are_listed_and_judged(tmp_path: Path) -> None:
    checkout, data = tmp_path / "co", tmp_path / "data" / SERVICE
    (checkout / "inc").mkdir(parents=True)
    data.mkdir(parents=True)
    (checkout / "inc" / "db.yaml").write_text("services:\n  db:\n    image: local/busybox:1\n")
    (checkout / "base.yaml").write_text("services:\n  base:\n    image: local/busybox:1\n")
    (checkout / "include.env").write_text("X=1\n")
    (checkout / "compose.yaml").write_text(
        "include:\n  - path: inc/db.yaml\n    env_file: include.env\n"
        "services:\n  app:\n    extends: {file: base.yaml, service: base}\n")
    model = load(checkout, data)
    assert model.files == (
        ("the compose file", f"{checkout}/compose.yaml"), (".env", f"{checkout}/.env"),
        ("include", f"{checkout}/inc/db.yaml"),
        ("include env_file", f"{checkout}/include.env"),
        ("extends file", f"{checkout}/base.yaml"))
    assert judge(model, SERVICE, "team", (), checkout, data) == []
    # the checkout's .env, committed as a symlink to a host file: compose reads it (as the
    # service user) and interpolates its values into the model
    (checkout / ".env").symlink_to("/etc/passwd")
    [v] = judge(load(checkout, data), SERVICE, "team", (), checkout, data)
    assert str(v) == (f"project: .env {checkout}/.env (really /etc/passwd) is outside "
                      "the service's data and checkout; keep data under ${PGO_DATA} "
                      f"(here {data}) [own-data]")


def test_a_model_file_that_is_no_regular_file_stops_the_load(tmp_path: Path) -> None:
    """A FIFO as .env (a container can make one in the data directory, and an include env
    file may lie there): compose would wait on it until its timeout, holding the service."""
    (tmp_path / "compose.yaml").write_text("services:\n  app:\n    image: local/busybox:1\n")
    os.mkfifo(tmp_path / ".env")
    with pytest.raises(ComposeError) as e:
        load(tmp_path, tmp_path / "data")
    assert str(e.value) == (f".env {tmp_path}/.env is not a regular file: compose would "
                            "wait on it or read it without end")


def test_model_files_are_judged_like_every_host_path() -> None:
    files = [("include", "/etc/compose.yaml"), ("include", "git@github.com:o/r.git"),
             ("include", "oci://registry.example/x:1"), ("extends file", f"{CHECKOUT}/${{X}}.yml")]
    found = judge(Model("", model(), tuple(files)), SERVICE, "team", NETS, Path(CHECKOUT),
                  DATADIR, others=(), resolve=lexical)
    assert [v.rule for v in found] == [DATA] * 4
    assert "compose would fetch it from the network" in found[1].message
    assert "a path made by interpolation can not be judged" in found[3].message
    # a file compose reads again at the next deploy may not lie where a container writes
    writable = model({"volumes": [bind(f"{CHECKOUT}/deploy")]})
    for what, path in ((".env", f"{CHECKOUT}/deploy/.env"),
                       ("include", f"{CHECKOUT}/deploy/db.yaml")):
        [v] = judge(Model("", writable, ((what, path),)), SERVICE, "team", NETS,
                    Path(CHECKOUT), DATADIR, others=(), resolve=lexical)
        assert v.rule == DATA and "it could change the model" in v.message
    env = model({"volumes": [bind(str(DATADIR))], "env_file": [f"{DATADIR}/app.env"]})
    assert DATA in {v.rule for v in check(env)}


# -- properties: however a path is spelled, only where it leads counts ------------------------

SEGMENT = st.text(alphabet="abcxyz-_.0", min_size=1, max_size=6).filter(
    lambda s: s not in (".", ".."))


@st.composite
def spelled(draw: st.DrawFn, target: str) -> str:
    """`target` spelled with `//`, `./` and `name/..` detours."""
    out = ""
    for seg in [s for s in target.split("/") if s]:
        noise = draw(st.sampled_from(["", "/", "./", "detour"]))
        if noise == "detour":
            out += "/" + draw(SEGMENT) + "/.."
        elif noise:
            out += "/" + noise.rstrip("/")
        out += "/" + seg
    return out or "/"


@st.composite
def outside(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["sibling", "ancestor", "elsewhere"]))
    if kind == "sibling":  # shares a prefix with a root, but is not under it
        root = draw(st.sampled_from([CHECKOUT, str(DATADIR)]))
        return root + draw(st.sampled_from(["-x", "x", "_old", ".bak"]))
    if kind == "ancestor":
        return draw(st.sampled_from(["/", "/srv", "/srv/pgo-data", "/var/lib/pgo", "/var"]))
    first = draw(st.sampled_from(["etc", "root", "run", "proc", "home", "usr"]))
    return "/" + "/".join([first, *draw(st.lists(SEGMENT, max_size=3))])


@st.composite
def inside(draw: st.DrawFn) -> str:
    root = draw(st.sampled_from([CHECKOUT, str(DATADIR)]))
    return "/".join([root, *draw(st.lists(SEGMENT, max_size=4))])


@given(st.data())
def test_any_spelling_of_a_path_outside_is_refused(data: st.DataObject) -> None:
    path = data.draw(spelled(data.draw(outside())))
    found = check(model({"volumes": [bind(path)]}))
    assert [v.rule for v in found] == [DATA], path


@given(st.data())
def test_any_spelling_of_a_path_inside_is_accepted(data: st.DataObject) -> None:
    path = data.draw(spelled(data.draw(inside())))
    # (read-only: a writable checkout would hold its .git, refused on that ground)
    assert check(model({"volumes": [bind(path, read_only=True), f"{path}:/v1:ro"]})) == [], path


@given(st.data())
def test_escaping_with_dotdot_from_inside_is_refused(data: st.DataObject) -> None:
    start = data.draw(inside())
    depth = len([s for s in start.split("/") if s])
    up = "/..".join([""] * (depth + 2))  # at least as many `..` as segments: to `/`
    path = start + up + data.draw(spelled(data.draw(outside())))
    found = check(model({"volumes": [bind(path)]}))
    assert DATA in {v.rule for v in found}, path
