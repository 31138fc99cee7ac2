"""systemd/pgod.service: systemd's own linter accepts it, and it says what pgod needs."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pgo.cli import pgod

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "pgod.service"
INSTALLED = "/usr/local/bin/pgod"


def settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line.strip() and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (scripts/setup.sh --test installs it)")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    # verify also checks that ExecStart's program exists: point it at this checkout's pgod
    # where pgod is not installed yet, and change nothing else
    text = UNIT.read_text()
    if not Path(INSTALLED).exists():
        text = text.replace(INSTALLED, str(Path(sys.executable).parent / "pgod"))
    unit = tmp_path / "pgod.service"
    unit.write_text(text)
    argv = ["systemd-analyze", "verify", str(unit)]
    if subprocess.run(["man", "-w", "pgod"], capture_output=True).returncode != 0:
        argv.insert(2, "--man=no")  # Documentation=man:pgod(8), not installed on this machine
    res = subprocess.run(argv, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == "", res.stderr


def test_unit_runs_pgod_as_root_with_readiness_and_reload():
    s = settings()
    assert s["Type"] == ["notify"]
    assert s["Restart"] == ["on-failure"]
    assert "User" not in s and "DynamicUser" not in s  # root: it switches users itself
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["KillMode"] == ["mixed"]
    assert s["WantedBy"] == ["multi-user.target"]
    assert "docker.service" in s["After"][0]


def test_exec_start_is_a_valid_pgod_command_line():
    argv = shlex.split(settings()["ExecStart"][0])
    assert argv[0] == INSTALLED
    args = pgod.parser().parse_args(argv[1:])
    assert args.config == "/etc/pgo.toml" and args.restart is True


def test_no_private_mount_namespace():
    """NFS shares pgod mounts must be seen by dockerd: nothing may give pgod a mount
    namespace of its own."""
    s = settings()
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
                "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "TemporaryFileSystem",
                "BindPaths", "ProtectKernelTunables", "ProtectKernelModules",
                "ProtectKernelLogs", "ProtectControlGroups", "PrivateMounts", "MountFlags",
                "RootDirectory", "ProtectProc"):
        assert key not in s, key
    caps = s["CapabilityBoundingSet"][0].split()
    for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"):
        assert cap in caps
