"""Model building blocks; ``build_model`` assembles the one a recipe names."""

from __future__ import annotations


def build_model(recipe):
    if recipe.model == "lipreading":
        from avtrain.models.lipreading import LipReadingModel

        return LipReadingModel.from_recipe(recipe)
    if recipe.model == "mtlam":
        from avtrain.models.mtlam import MTLAMConfig, MTLAMLipReading

        return MTLAMLipReading.from_config(MTLAMConfig.from_confs(
            recipe.model_conf, recipe.visual_frontend_conf, recipe.audio_frontend_conf,
            recipe.temporal, recipe.temporal_conf, recipe.memory_conf))
    if recipe.model == "speech":
        from avtrain.models.bridging_speech import SpeechModel

        return SpeechModel.from_recipe(recipe)
    if recipe.model == "two_tower":
        from avtrain.models.two_tower import TwoTowerModel

        return TwoTowerModel.from_recipe(recipe)
    raise ValueError(f"unknown model {recipe.model!r}")
