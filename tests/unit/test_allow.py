"""Operator exceptions (`allow` in pgo.toml): each entry is checked strictly when the config
is loaded, and lifts exactly one rule for one service, nothing beside it."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pgo import allow, config
from pgo.compose import Model
from pgo.errors import ConfigError
from pgo.policy import DATA, NAMESPACES, PORTS, PRIVILEGES, Judgement, judgement

SERVICE = "vpn"
CHECKOUT = "/var/lib/pgo/vpn"
DATADIR = "/var/lib/pgo-data/vpn"
BASE = '[[services]]\nname = "vpn"\nuser = "u"\nrepository = "/r"\n'


def parse(text: str) -> config.Config:
    return config.parse(text, "pgo.toml", known_user=lambda u: True)


# -- the config ---------------------------------------------------------------------------------

def test_entries_parse_into_exceptions() -> None:
    (s,) = parse(BASE + 'allow = ["cap_add:net_admin", "device:/dev/dri", "bind:/srv/media:ro",'
                        ' "bind:/srv/dl:rw", "runtime:nvidia", "port:53/udp", "port:8443",'
                        ' "cap_add:CAP_SYS_TIME"]\n').services
    assert [str(a) for a in s.allow] == [
        "cap_add:NET_ADMIN", "device:/dev/dri", "bind:/srv/media:ro", "bind:/srv/dl:rw",
        "runtime:nvidia", "port:53/udp", "port:8443/tcp", "cap_add:SYS_TIME"]
    assert s.allow[3] == allow.Allow("bind", "/srv/dl", write=True)
    (s,) = parse(BASE).services
    assert s.allow == ()


@pytest.mark.parametrize(("entry", "expect"), [
    ('"nokind"', "entry 'nokind': not KIND:VALUE (kinds: bind, cap_add, device, port, "
                 "runtime)"),
    ('"sysctl:net.ipv4.ip_forward"', "unknown kind 'sysctl'"),
    ('"network_mode:host"', "unknown kind 'network_mode'"),
    ('"cap_add:"', "no cap_add named"),
    ('"cap_add:NET ADMIN"', "no cap_add named, or one with blanks in it"),
    ('"cap_add:FLY"', "'FLY' is not a Linux capability"),
    ('"cap_add:ALL"', "ALL is every capability: a service that needs them runs as root"),
    ('"cap_add:SYS_ADMIN"', "SYS_ADMIN hands the container the host"),
    ('"cap_add:dac_read_search"', "DAC_READ_SEARCH hands the container the host"),
    ('"cap_add:CHOWN"', "CHOWN is in Docker's default set: allowed already"),
    ('"device:dri"', "must be an absolute path"),
    ('"device:/srv/x"', "a device lies under /dev"),
    ('"device:/dev"', "a device lies under /dev"),
    ('"device:/dev/mem"', "/dev/mem is the host's memory or I/O ports"),
    ('"device:/dev/dri/../mem"', "without `.`, `..`"),
    ('"bind:/srv/media"', "must be bind:PATH:ro or bind:PATH:rw"),
    ('"bind:/srv/media:rwx"', "must be bind:PATH:ro or bind:PATH:rw"),
    ('"bind:srv/media:ro"', "must be an absolute path"),
    ('"bind:/srv/media/:ro"', "a trailing `/`"),
    ('"bind:/:ro"', "must be an absolute path"),
    ('"bind:/srv:x:ro"', "a path with `:` can not be told"),
    ('"bind:/var/run/docker.sock:rw"', "lies in /var/run"),
    ('"bind:/var/lib:ro"', "is, holds or lies in /var/lib/docker"),
    ('"bind:/proc/1:ro"', "lies in /proc"),
    ('"bind:/etc:ro"', "is or holds the system directory /etc"),
    ('"bind:/home:ro"', "is or holds the system directory /home"),
    ('"runtime:runc"', "runc is allowed already"),
    ('"runtime:-x"', "not a runtime name"),
    ('"port:0"', "must be port:PORT or port:PORT/PROTO"),
    ('"port:65536/tcp"', "must be port:PORT or port:PORT/PROTO"),
    ('"port:53/icmp"', "must be port:PORT or port:PORT/PROTO"),
    ('"port:53-54/udp"', "must be port:PORT or port:PORT/PROTO"),
    ('"port:53/udp", "port:53/udp"', "entry 'port:53/udp': listed twice"),
    ('"cap_add:NET_ADMIN", "cap_add:cap_net_admin"', "entry 'cap_add:cap_net_admin': listed"),
    ("1", "entries must be strings (KIND:VALUE), not integer"),
])
def test_each_wrong_entry_is_one_line_naming_file_service_key_entry(entry: str,
                                                                     expect: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(BASE + f"allow = [{entry}]\n")
    msg = str(e.value)
    assert msg.startswith("pgo.toml: service vpn: key 'allow': "), msg
    assert expect in msg and "\n" not in msg, msg


def test_allow_is_a_list_and_not_for_root() -> None:
    with pytest.raises(ConfigError, match="key 'allow': must be a list, not string"):
        parse(BASE + 'allow = "cap_add:NET_ADMIN"\n')
    with pytest.raises(ConfigError, match="key 'allow': a root service is not judged"):
        parse(BASE.replace('"u"', '"root"') + 'allow = ["cap_add:NET_ADMIN"]\n')


# -- each kind lifts exactly its rule ---------------------------------------------------------

def lexical(path: str) -> str:
    return "/" + posixpath.normpath(path).lstrip("/")


def judge(svc: dict[str, Any], entries: Sequence[str] = (), resolve: Any = lexical,
          **top: Any) -> Judgement:
    m = {"name": SERVICE, "services": {"app": {"image": "local/busybox:1", **svc}}, **top}
    return judgement(Model("", m), SERVICE, "team", (), Path(CHECKOUT), Path(DATADIR),
                     allow=[allow.parse(e) for e in entries], others=(), resolve=resolve)


def rules(svc: dict[str, Any], entries: Sequence[str] = (), **kw: Any) -> set[str]:
    return {v.rule for v in judge(svc, entries, **kw).violations}


def test_cap_add_lifts_that_capability_only() -> None:
    svc = {"cap_add": ["NET_ADMIN"]}
    assert rules(svc) == {PRIVILEGES}
    j = judge(svc, ["cap_add:NET_ADMIN"])
    assert j.violations == () and [str(x.allow) for x in j.lifted] == ["cap_add:NET_ADMIN"]
    assert str(j.lifted[0]) == ("allowed by cap_add:NET_ADMIN: compose service app: cap_add "
                                "NET_ADMIN: a capability beyond Docker's default set "
                                "[own-privileges]")
    assert rules({"cap_add": ["cap_net_admin", "net_admin"]}, ["cap_add:NET_ADMIN"]) == set()
    j = judge({"cap_add": ["NET_ADMIN", "SYS_ADMIN"]}, ["cap_add:NET_ADMIN"])
    assert [v.message for v in j.violations] == [
        "cap_add SYS_ADMIN: a capability beyond Docker's default set"]
    assert rules({"cap_add": ["ALL"]}, ["cap_add:NET_ADMIN"]) == {PRIVILEGES}
    # nothing beside it: not privileged, not the host's network, no device
    assert rules({"cap_add": ["NET_ADMIN"], "privileged": True},
                 ["cap_add:NET_ADMIN"]) == {PRIVILEGES}
    assert rules({"cap_add": ["NET_ADMIN"], "network_mode": "host"},
                 ["cap_add:NET_ADMIN"]) == {NAMESPACES}


def test_bind_lifts_that_path_and_below_in_that_mode_only() -> None:
    def bind(source: str, ro: bool = True) -> dict[str, Any]:
        return {"volumes": [{"type": "bind", "source": source, "target": "/m",
                             "read_only": ro}]}
    ro, rw = ["bind:/srv/media:ro"], ["bind:/srv/media:rw"]
    assert rules(bind("/srv/media")) == {DATA}
    assert rules(bind("/srv/media"), ro) == set()
    assert rules(bind("/srv/media/films"), ro) == set()
    assert rules({"volumes": ["/srv/media:/m:ro"]}, ro) == set()  # (v1's string)
    for source, ro_ in (("/srv/media", False), ("/srv", True), ("/srv/media2", True),
                        ("/srv/media/../etc", True), ("/srv/media/../media2", True)):
        assert rules(bind(source, ro_), ro) == {DATA}, source
    assert rules(bind("/srv/media", False), rw) == set()
    assert rules(bind("/srv/media/x", True), rw) == set()
    # where it really leads counts: a symlink in the media tree to /etc is not the media
    links = {"/srv/media/etc": "/etc"}

    def resolve(path: str) -> str:
        p = lexical(path)
        for link, to in links.items():
            if p == link or p.startswith(link + "/"):
                return to + p[len(link):]
        return p
    assert rules(bind("/srv/media/etc/shadow"), ro, resolve=resolve) == {DATA}
    # and the exception lifts only the bind's rule: the same path as a secret's file is not
    secret = judge({}, ro, secrets={"s": {"file": "/srv/media/key"}})
    assert {v.rule for v in secret.violations} == {DATA}
    # a read-write bind holding the checkout's .git stays refused by that rule
    j = judge(bind("/srv/media", False), ["bind:/srv/media:rw"])
    assert j.violations == ()


def test_a_bind_exception_never_reaches_every_services_data_or_pgods_state() -> None:
    def bind(source: str) -> dict[str, Any]:
        return {"volumes": [f"{source}:/m:ro"]}
    for entry, source in (("bind:/var/lib/pgo-data:ro", "/var/lib/pgo-data"),
                          ("bind:/var/lib/pgo:ro", "/var/lib/pgo"),
                          ("bind:/var/lib/pgo/.pgo:ro", "/var/lib/pgo/.pgo/services")):
        j = judge(bind(source), [entry])
        assert [v.rule for v in j.violations] == [DATA], entry
        assert "no exception covers it" in j.violations[0].message
    # another service's data is the operator's to share
    assert rules(bind("/var/lib/pgo-data/media"), ["bind:/var/lib/pgo-data/media:ro"]) == set()


def test_device_lifts_that_device_and_those_below_it() -> None:
    dri = {"devices": [{"source": "/dev/dri", "target": "/dev/dri", "permissions": "rwm"}]}
    assert rules(dri) == {PRIVILEGES}
    assert rules(dri, ["device:/dev/dri"]) == set()
    assert rules({"devices": ["/dev/dri/renderD128:/dev/dri/renderD128"]},
                 ["device:/dev/dri"]) == set()
    assert rules({"devices": ["/dev/fuse"]}, ["device:/dev/dri"]) == {PRIVILEGES}
    assert rules({"devices": ["/dev/dri/../mem"]}, ["device:/dev/dri"]) == {PRIVILEGES}
    assert rules({"devices": ["nvidia.com/gpu=all"]}, ["device:/dev/dri"]) == {PRIVILEGES}
    # neither device rules, gpus, nor a device reservation
    for svc in ({"device_cgroup_rules": ["c 226:* rmw"]}, {"gpus": "all"},
                {"deploy": {"resources": {"reservations": {"devices": [{"count": 1}]}}}}):
        assert rules(svc, ["device:/dev/dri"]) == {PRIVILEGES}, svc


def test_runtime_lifts_that_runtime_only() -> None:
    assert rules({"runtime": "nvidia"}, ["runtime:nvidia"]) == set()
    [v] = judge({"runtime": "kata"}, ["runtime:nvidia"]).violations
    assert v.message == "runtime kata: only runc is allowed"


def test_port_lifts_that_port_and_protocol_only() -> None:
    def ports(*entries: Any) -> dict[str, Any]:
        return {"ports": list(entries)}
    udp = {"target": 53, "published": "53", "protocol": "udp"}
    assert rules(ports(udp)) == {PORTS}
    assert rules(ports(udp), ["port:53/udp"]) == set()
    assert rules(ports({**udp, "host_ip": "127.0.0.1"}), ["port:53/udp"]) == set()
    assert rules(ports("53:53/udp", "127.0.0.1:53:53/udp", "[::1]:53:53/udp"),
                 ["port:53/udp"]) == set()
    for other in ({**udp, "protocol": "tcp"}, {**udp, "published": "54"},
                  {"target": 53, "protocol": "udp"}, "53/udp", "53-54:53-54/udp", "53:53"):
        j = judge(ports(other), ["port:53/udp"])
        assert [v.rule for v in j.violations] == [PORTS], other
    j = judge(ports(udp, {**udp, "protocol": "tcp"}), ["port:53/udp"])
    assert [v.message for v in j.violations] == [
        "publishes ports on the host (53->53); use expose and the proxy"]
    assert rules(ports({"target": 443, "published": "8443"}), ["port:8443"]) == set()


def test_exceptions_the_model_does_not_need_are_told() -> None:
    j = judge({"cap_add": ["NET_ADMIN"]}, ["cap_add:NET_ADMIN", "port:53/udp"])
    assert [str(a) for a in j.unused] == ["port:53/udp"]
    # a bind inside the data needs no exception, so it uses none
    j = judge({"volumes": [f"{DATADIR}/m:/m"]}, [f"bind:{DATADIR}:rw"])
    assert j.violations == () and j.lifted == () and len(j.unused) == 1


def test_root_stays_the_only_full_bypass() -> None:
    m = {"name": SERVICE, "services": {"app": {"image": "x", "privileged": True}}}
    every = [allow.parse(e) for e in ("cap_add:NET_ADMIN", "device:/dev/dri",
                                      "bind:/srv:rw", "runtime:nvidia", "port:53")]
    j = judgement(Model("", m), SERVICE, "team", (), Path(CHECKOUT), Path(DATADIR),
                  allow=every, others=(), resolve=lexical)
    assert [v.rule for v in j.violations] == [PRIVILEGES]
    assert judgement(Model("", m), SERVICE, "root", (), Path(CHECKOUT), Path(DATADIR)) \
        == Judgement()
