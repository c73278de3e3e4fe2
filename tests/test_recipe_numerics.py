"""Every shipped recipe trains to the same numbers as before a refactoring: two steps of each recipe's own model
(its sizes, losses, optimiser and schedule) on synthetic shards shaped like its data, compared with the losses the
code gave when tests/golden/recipe_losses.json was written (``python tests/test_recipe_numerics.py --write``).

What may change the numbers on purpose (a model or loss change) rewrites the file in the same commit; what must not
(moving code between files, tasks taking over losses from models, import order) leaves it alone. The tolerance
covers CPU kernels that differ between machines (AVX2 / AVX-512 give different roundings), not a changed result:
another initialisation, random draw or loss term moves the first step's loss by far more.

The first step's loss is compared tightly (it is the forward pass of the initialised model on the data); the second
more loosely, because Adam's first update is about lr * sign(gradient), so a rounding that flips a near-zero
gradient moves a weight by a whole lr step: the same code on the same machine gave second-step losses up to 4.6e-4
apart (relative) with and without OMP_NUM_THREADS=1 set (trainer.threads is 1 in both). The shards store crops
losslessly (tests/recipe_shards.py), so the x264 build cannot move these numbers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from recipe_shards import small_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
GOLDEN = Path(__file__).parent / "golden" / "recipe_losses.json"
STEP_ONE_REL = 2e-4  # CPU kernels (AVX2 / AVX-512) round differently; a changed model or loss moves it by far more
LATER_STEPS_REL = 2e-3  # about 4x the spread measured from thread settings alone (see above)


def recipe_losses(path: Path, work: Path) -> list[float]:
    from avtrain.api import train

    return train(small_recipe(path, work), resume=False).losses


@pytest.mark.slow
@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_trains_to_the_recorded_losses(path, tmp_path_factory):
    golden = json.loads(GOLDEN.read_text())
    assert path.stem in golden, f"{path.stem}: no recorded losses; run python tests/test_recipe_numerics.py --write"
    work = tmp_path_factory.getbasetemp() / "numerics"
    losses = recipe_losses(path, work)
    first, *later = golden[path.stem]
    assert losses[0] == pytest.approx(first, rel=STEP_ONE_REL, abs=1e-5), "the first step's loss moved"
    assert losses[1:] == pytest.approx(later, rel=LATER_STEPS_REL, abs=1e-5), "a later step's loss moved"


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        table = {p.stem: recipe_losses(p, Path(tmp)) for p in RECIPES}
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {GOLDEN}: {len(table)} recipes")
