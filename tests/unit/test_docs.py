"""The man pages say what the code does: every pgod flag and every pgoctl command is in
them, and go-md2man turns them into roff."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pgo.cli import pgoctl, pgod
from pgo.request import COMMANDS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_pgod_flag_is_in_pgod_8() -> None:
    text = (DOCS / "pgod.8.md").read_text().replace("\\-", "-")
    for action in pgod.parser()._actions:
        for flag in action.option_strings:
            if flag not in ("-h", "--help"):
                assert flag in text, f"pgod.8.md does not mention {flag}"


def test_every_command_and_flag_is_in_pgoctl_1() -> None:
    text = (DOCS / "pgoctl.1.md").read_text().replace("\\-", "-")
    for name, spec in COMMANDS.items():
        assert f"\n**{name}**" in text, f"pgoctl.1.md does not describe {name}"
        for long, _short, _ in spec.flags:
            assert long in text, f"pgoctl.1.md does not list {name} {long}"
    for action in pgoctl.parser()._actions:
        for flag in action.option_strings:
            if flag not in ("-h", "--help"):
                assert flag in text, f"pgoctl.1.md does not mention {flag}"


@pytest.mark.skipif(shutil.which("go-md2man") is None, reason="go-md2man not installed")
@pytest.mark.parametrize("page", ["pgod.8", "pgoctl.1"])
def test_man_pages_build(page: str, tmp_path: Path) -> None:
    out = tmp_path / page
    subprocess.run(["go-md2man", "-in", str(DOCS / f"{page}.md"), "-out", str(out)],
                   check=True)
    assert out.read_text().startswith(".nh\n") or ".TH" in out.read_text()
