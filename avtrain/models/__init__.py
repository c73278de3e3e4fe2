"""Model building blocks; ``build_model`` assembles the one a recipe names."""

from __future__ import annotations


def build_model(recipe):
    from avtrain.models.lipreading import LipReadingModel

    if recipe.model == "lipreading":
        return LipReadingModel.from_recipe(recipe)
    raise ValueError(f"unknown model {recipe.model!r}")
