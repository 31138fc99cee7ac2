"""The man pages say what the code does: every pgod flag and every pgoctl command is in
them, and go-md2man turns them into roff."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pgo.cli import pgoctl, pgod
from pgo.commands import COMMANDS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_pgod_flag_is_in_pgod_8() -> None:
    text = (DOCS / "pgod.8.md").read_text().replace("\\-", "-")
    for action in pgod.parser()._actions:
        for flag in action.option_strings:
            if flag not in ("-h", "--help"):
                assert flag in text, f"pgod.8.md does not mention {flag}"


def test_every_command_and_flag_is_in_pgoctl_1() -> None:
    """Each command of the table has its entry in COMMANDS, with its flags (long and short)
    and a *(lock)* mark exactly when it takes the service's lock."""
    text = (DOCS / "pgoctl.1.md").read_text().replace("\\-", "-")
    commands = text[text.index("\n# COMMANDS\n"):text.index("\n# ENVIRONMENT\n")]
    for name, spec in COMMANDS.items():
        start = commands.find(f"\n**{name}**")
        assert start >= 0, f"pgoctl.1.md does not describe {name}"
        entry = commands[start:commands.find("\n\n", start + 1)]
        head = entry.split("\n:", 1)[0]
        for long, short, _ in spec.flags:
            assert f"**{long}**" in head, f"pgoctl.1.md does not list {name} {long}"
            if short:
                assert f"**{short}**|**{long}**" in head, f"{name}: {short} is not shown"
        marked = "*(lock)*" in entry
        assert marked == spec.lock, f"pgoctl.1.md: {name} is{'' if marked else ' not'} " \
            "marked (lock), the command table says otherwise"
    help_text = pgoctl.parser().format_help()
    for name, spec in COMMANDS.items():
        assert f"  {name} " in help_text and spec.summary in help_text.replace("\n", " ")
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
