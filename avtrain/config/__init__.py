"""The recipe schema: YAML -> typed, validated config (see :mod:`avtrain.config.recipe`)."""

from avtrain.config.recipe import *  # noqa: F401,F403
from avtrain.config.recipe import _suggest  # noqa: F401
