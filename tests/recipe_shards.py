"""Synthetic shards shaped like a shipped recipe's data (its crop field and colour, the two-tower fields, clip
lengths), and the overrides that make any recipe train two steps of batch 2 on them: for tests that run every
recipe's own model (tests/test_recipe_numerics.py, tests/test_gpu_paths.py)."""

from __future__ import annotations

from pathlib import Path

SMALL = ["data.batch_size=2", "data.num_workers=0", "data.shuffle_buffer=1", "trainer.max_steps=2",
         "trainer.threads=1", "trainer.val_each_epoch=false", "trainer.progress=false", "trainer.log_every=1"]


def shards_for(root: Path, recipe) -> Path:
    """Synthetic shards with the recipe's crop field and colour (and the two-tower fields), one folder per shape.

    Crops are stored losslessly (npy): H.264 bytes depend on the x264 build and, with its macroblock tree, changed from
    process to process on some CPUs (docs/format.md), which moved the recorded losses of tests/test_recipe_numerics.py
    by up to 3 % without any change to the code they guard."""
    from avtrain.synthetic import write_shards

    d = recipe.data
    two_tower = recipe.model_conf.get("n_linear") if recipe.model == "two_tower" else None
    size = 112 if d.video_field == "mouth" else 96
    frames = 20 if recipe.model in ("speech", "two_tower") else 12
    name = f"{d.video_field}-{d.color}-{size}-{frames}-{two_tower}-npy"
    if not (root / name / "index.json").exists():
        write_shards(root / name, splits={"train": (1, 4)}, size=size, field=d.video_field, color=d.color,
                     codec="npy", min_frames=frames, max_frames=frames, num_classes=4, two_tower=two_tower)
    return root / name


def small_recipe(path: Path, work: Path, extra: list[str] = ()):
    """The recipe at ``path`` on synthetic shards of its shape, two steps of batch 2, a pretrained front left out."""
    from avtrain.config import load_recipe

    shards = shards_for(work / "shards", load_recipe(path, SMALL))
    sets = [*SMALL, f"data.shards={shards}", f"output_dir={work / path.stem}", *extra]
    if "visual_init" in path.read_text():  # a pretrained front is a file of another run: start from scratch here
        sets.append("model_conf.visual_init=null")
    return load_recipe(path, sets)
