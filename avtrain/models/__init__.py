"""Model building blocks (memory, front-ends, back-ends, temporal models, decoders, post-nets) and the models the
tasks assemble from them; ``build_model`` builds the one a recipe names, through its task."""

from __future__ import annotations


def build_model(recipe):
    from avtrain.tasks import task_for

    return task_for(recipe).build_model()
