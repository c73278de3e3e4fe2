"""Every command's --help of avprep and avtrain at 80 columns (a laptop terminal, a Slurm log): each option name
a user must type is shown whole, and no line is wider than the terminal."""

from __future__ import annotations

import re

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from avprep.cli import app as avprep_app
from avtrain.cli import app as avtrain_app

APPS = {"avprep": avprep_app, "avtrain": avtrain_app}


def _commands(group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """(words, command) of every command under a group (typer's own click: groups are those with subcommands)."""
    found = []
    for name, command in group.commands.items():
        if getattr(command, "commands", None):
            found += _commands(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


CASES = [(program, path, command) for program, typer_app in APPS.items()
         for path, command in _commands(get_command(typer_app))]


@pytest.mark.parametrize("program, path, command", CASES, ids=[" ".join((c[0], *c[1])) for c in CASES])
def test_help_at_80_columns_shows_every_option_name_whole(program, path, command):
    result = CliRunner().invoke(APPS[program], [*path, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0, result.output
    text = result.output
    too_wide = [line for line in text.splitlines() if len(line) > 80]
    assert not too_wide, "\n".join(too_wide)
    names = [n for p in command.params if p.param_type_name == "option" for n in (*p.opts, *p.secondary_opts)]
    assert "--help" in text
    missing = [n for n in names if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text)]
    assert not missing, f"{program} {' '.join(path)} --help at 80 columns lacks {missing}:\n{text}"


def test_every_command_is_covered():
    assert {" ".join(p) for prog, p, _ in CASES if prog == "avprep"} >= {
        "grid", "lrw", "lrw1000", "tcd-timit", "lrs3", "lrs2", "folder", "inspect", "index", "presets", "download grid"}
    assert {" ".join(p) for prog, p, _ in CASES if prog == "avtrain"} >= {"run", "eval", "synth", "check"}
