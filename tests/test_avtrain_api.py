"""docs/training.md's notebook example, run as written (on synthetic shards shaped like GRID's word clips): the
Python API builds a task and a loader from a recipe, computes a step's losses, trains and evaluates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from avtrain.synthetic import write_shards

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # 20 training steps of the GRID word recipe's model (~20 s)
def test_the_notebook_example_of_the_training_docs_runs(tmp_path, monkeypatch, capsys):
    blocks = [b for b in re.findall(r"```python\n(.*?)```", (REPO / "docs" / "training.md").read_text(), re.S)
              if "api.load_recipe(" in b]
    assert len(blocks) == 1
    shards = write_shards(tmp_path / "words", splits={"train": (2, 200), "val": (1, 8), "test": (1, 8)},
                          num_classes=51, size=112, min_frames=8, max_frames=14, distinct=32)
    code = blocks[0].replace("data.shards=out/grid-s1-words", f"data.shards={shards}")
    code = code.replace("output_dir=runs/notebook", f"output_dir={tmp_path / 'notebook'}")
    monkeypatch.chdir(REPO)  # the recipe path is the repository's
    variables: dict = {}
    exec(compile(code, "docs/training.md: the notebook example", "exec"), variables)
    assert variables["result"].step == 20 and variables["batch"]["video"].shape[2:] == (1, 56, 56)
    assert 0.0 <= variables["metrics"]["top1"] <= 1.0
    assert (tmp_path / "notebook" / "eval" / "test" / "metrics.json").exists()
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("torch.Size([32,") and printed[1].startswith("20 acc")
