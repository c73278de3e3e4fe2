"""Every recipe round-trips (ESPnet's print-config test): what `avtrain check` prints loads back to an equal recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from avtrain.cli import app
from avtrain.config import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert len(RECIPES) >= 10


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_check_prints_a_recipe_that_loads_back_equal(path, tmp_path):
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    printed = tmp_path / path.name
    printed.write_text(result.stdout)
    original, again = load_recipe(path), load_recipe(printed)
    assert again == original
    assert again.to_yaml() == original.to_yaml()  # and prints the same again
