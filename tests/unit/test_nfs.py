"""NFS mounts: the URL, the mount(8) command line, /proc/self/mountinfo parsing, and the
ordering at the runner's edge (mount before the first up, never twice, umount after the
down of a departing service).

These machines have no NFS client, so a recording fake stands in for the runner: it answers
like git, docker compose and mount(8) would, and its `mount` adds a line to a mountinfo
file the way the kernel would. What is proven is what pgod asks for, and in what order."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from pgo import config
from pgo.daemon import Daemon, Options
from pgo.errors import PgoError
from pgo.nfs import Export, Mount, Mounts, mount_argv, mounted_at, parse_mountinfo, parse_url
from pgo.runner import RunAs
from pgo.service import Hooks, Paths, TrackedService
from tests.unit.fakes import FakeRunner

MODEL = {"services": {"web": {"image": "local/busybox:1"}}}
ROOTFS = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"


def root_user(home: Path) -> RunAs:
    return RunAs(user="root", uid=0, gid=0, groups=(), home=str(home))


def tracked(tmp: Path, runner: FakeRunner, hooks: Hooks, **kw: object) -> TrackedService:
    cfg = config.Service(name=str(kw.pop("name", "svc")), user="root",
                         repository="/srv/git/svc.git", **kw)  # type: ignore[arg-type]
    svc = TrackedService(cfg, Paths(tmp / "pgo", tmp / "data"), runner, ("docker", "compose"),
                         hooks=hooks, as_user=root_user(tmp))
    svc.prepare()
    return svc


@pytest.fixture
def fake(tmp_path: Path) -> FakeRunner:
    info = tmp_path / "mountinfo"
    info.write_text(ROOTFS)
    fake = FakeRunner(info)
    fake.push(MODEL)
    return fake


# -- pure ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "export"), [
    ("nfs://files.example.org/export/team1", Export("files.example.org", "/export/team1")),
    ("nfs://10.0.0.5/", Export("10.0.0.5", "/")),
    ("nfs://nas:2049/data", Export("nas", "/data", 2049)),
])
def test_urls(url: str, export: Export) -> None:
    assert parse_url(url) == export


@pytest.mark.parametrize("bad", ["nfs://", "nfs://-o/x", "smb://h/x", "nfs://h", "nfs://h:0/x",
                                 "nfs://h/x y"])
def test_bad_urls(bad: str) -> None:
    with pytest.raises(PgoError):
        parse_url(bad)


def test_mount_command_line() -> None:
    assert mount_argv(parse_url("nfs://files.example.org/export/t"), "/var/lib/pgo-data/t") == [
        "mount", "-t", "nfs", "-o", "rw,nosuid,hard", "files.example.org:/export/t",
        "/var/lib/pgo-data/t"]
    assert mount_argv(parse_url("nfs://nas:2049/d"), "/x")[4] == "rw,nosuid,hard,port=2049"


def test_mountinfo_parsing() -> None:
    text = (ROOTFS
            + "40 22 0:40 / /data/with\\040space rw shared:5 master:1 - nfs4 nas:/a\\040b rw\n"
            + "41 22 0:41 / /data/t rw - tmpfs tmpfs rw\n"
            + "42 41 0:42 / /data/t rw,nosuid shared:7 - nfs nas:/t rw,hard\n"
            + "garbage line\n")
    mounts = parse_mountinfo(text)
    assert Mount("/data/with space", "nfs4", "nas:/a b") in mounts
    assert len(mounts) == 4
    assert mounted_at(mounts, "/data/t") == Mount("/data/t", "nfs", "nas:/t")  # the top one
    assert mounted_at(mounts, "/data") is None


# -- ordering at the runner's edge ------------------------------------------------------------

def test_mounted_before_the_first_up_and_never_twice(tmp_path: Path, fake: FakeRunner) -> None:
    mounts = Mounts(fake, fake.mountinfo)
    svc = tracked(tmp_path, fake, Hooks(before_up=[mounts.ensure]),
                  mount="nfs://files.example.org/export/svc")
    assert asyncio.run(svc.reconcile()) == "deployed"
    kinds = fake.kinds()
    assert kinds.count("mount") == 1
    assert kinds.index("mount") < kinds.index("compose pull") < kinds.index("compose up")
    call = fake.calls[kinds.index("mount")]
    assert call.argv == ["mount", "-t", "nfs", "-o", "rw,nosuid,hard",
                         "files.example.org:/export/svc", str(tmp_path / "data" / "svc")]
    assert call.as_user is None  # as root

    # brought up again (its containers went away), and by a new pgod: no second mount
    fake.containers.clear()
    assert asyncio.run(svc.reconcile()) == "started"
    again = tracked(tmp_path, fake, Hooks(before_up=[Mounts(fake, fake.mountinfo).ensure]),
                    mount="nfs://files.example.org/export/svc")
    fake.containers.clear()
    assert asyncio.run(again.reconcile()) == "started"
    assert fake.kinds().count("mount") == 1
    assert fake.kinds().count("compose up") == 3


def test_a_failed_mount_brings_nothing_up(tmp_path: Path, fake: FakeRunner) -> None:
    fake.fail["mount"] = (32, "mount.nfs: Connection refused\n")
    mounts = Mounts(fake, fake.mountinfo)
    svc = tracked(tmp_path, fake, Hooks(before_up=[mounts.ensure]),
                  mount="nfs://files.example.org/export/svc")
    assert asyncio.run(svc.reconcile()) == "failed"
    assert "compose up" not in fake.kinds()
    assert svc.state.last_error == (
        f"mount files.example.org:/export/svc on {tmp_path / 'data' / 'svc'}: exit status 32: "
        "mount.nfs: Connection refused")


def test_no_mount_key_no_mount(tmp_path: Path, fake: FakeRunner) -> None:
    svc = tracked(tmp_path, fake, Hooks(before_up=[Mounts(fake, fake.mountinfo).ensure]))
    assert asyncio.run(svc.reconcile()) == "deployed"
    assert "mount" not in fake.kinds()


def daemon(tmp: Path, fake: FakeRunner) -> Daemon:
    opts = Options(config_path=str(tmp / "pgo.toml"), paths=Paths(tmp / "pgo", tmp / "data"),
                   interval=60, ssh_addr=None, metric_addr=None, restart=False,
                   compose_binary=("docker", "compose"))
    d = Daemon(config.Config(path=opts.config_path, services=()), opts, runner=fake)
    d.mounts.mountinfo = fake.mountinfo
    return d


def test_unmounted_after_the_down_of_a_stale_service(tmp_path: Path, fake: FakeRunner) -> None:
    svc = tracked(tmp_path, fake, Hooks(before_up=[Mounts(fake, fake.mountinfo).ensure]),
                  mount="nfs://files.example.org/export/svc")
    assert asyncio.run(svc.reconcile()) == "deployed"
    fake.calls.clear()
    asyncio.run(daemon(tmp_path, fake).remove_stale(keep=[]))  # svc is no longer configured
    assert fake.kinds() == ["compose down", "umount"]
    assert fake.calls[1].argv == ["umount", str(tmp_path / "data" / "svc")]
    assert fake.calls[1].as_user is None
    assert not (tmp_path / "pgo" / "svc").exists()
    assert mounted_at(parse_mountinfo(fake.mountinfo.read_text()),
                      os.path.realpath(tmp_path / "data" / "svc")) is None


def test_only_an_nfs_mount_on_the_data_directory_is_unmounted(tmp_path: Path,
                                                             fake: FakeRunner) -> None:
    data = os.path.realpath(tmp_path / "data")
    fake.mountinfo.write_text(ROOTFS + f"50 22 0:50 / {data}/a rw - tmpfs tmpfs rw\n"
                              f"51 22 0:51 / {data}/b/sub rw - nfs nas:/b rw\n")
    d = daemon(tmp_path, fake)
    for name in ("a", "b", "c"):
        asyncio.run(d.remove_service_dir(name))
    assert "umount" not in fake.kinds()


def test_a_failed_umount_is_logged_not_raised(tmp_path: Path, fake: FakeRunner,
                                             caplog: pytest.LogCaptureFixture) -> None:
    data = os.path.realpath(tmp_path / "data")
    fake.mountinfo.write_text(ROOTFS + f"51 22 0:51 / {data}/b rw - nfs nas:/b rw\n")
    fake.fail["umount"] = (32, "umount.nfs: /x: device is busy\n")
    asyncio.run(daemon(tmp_path, fake).remove_service_dir("b"))
    assert fake.kinds() == ["compose down", "umount"]
    assert any("umount" in r.message and "device is busy" in r.message for r in caplog.records)
