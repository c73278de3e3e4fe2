"""Model building blocks (memory, front-ends, back-ends, temporal models, decoders, post-nets) and the models the
tasks assemble from them. Models take tensors and return tensors: they read no recipe and compute no loss (the
tasks in avtrain.tasks do both)."""
