"""The recipe schema: shared sections (:mod:`.recipe`), component confs (:mod:`.components`), one registered schema
per model (:mod:`.models`), and loading with one-line errors (:mod:`.loading`)."""

from avtrain.config.components import *  # noqa: F401,F403  (the component confs)
from avtrain.config.loading import apply_overrides, load_recipe, validate_recipe  # noqa: F401
from avtrain.config.models import LipReadingRecipe, MTLAMRecipe, SpeechRecipe, TwoTowerRecipe  # noqa: F401
from avtrain.config.recipe import DataConf, EvalConf, Recipe, RecipeError, TrainerConf  # noqa: F401
