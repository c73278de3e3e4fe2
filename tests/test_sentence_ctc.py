"""Sentence lip reading with CTC: transcripts to classes and back, greedy decoding, word and character error rates,
and the task through the engine on synthetic shards (training steps, validation WER, evaluation files)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from avtrain.api import evaluate, load_recipe, task_for, train
from avtrain.compare import load_scores
from avtrain.synthetic import write_shards
from avtrain.tasks.lipreading.sentence import ALPHABETS, encode, error_counts, greedy_decode
from avtrain.tasks.text import edit_distance

REPO = Path(__file__).resolve().parents[1]
ABC = ALPHABETS["english"]


def test_edit_distance_and_error_rates():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance([], ["a"]) == 1
    sums = error_counts(["bin blue at f two now", "set red by a one soon"], ["bin blue at f two now", "set red a one"])
    assert sums["word_errors"] == 2 and sums["words"] == 12  # "by" and "soon" deleted
    assert sums["char_errors"] == len(" by") + len(" soon")


def test_encode_and_greedy_decoding_round_trip():
    targets, lengths = encode(["Bin blue", "at"], ABC)
    assert lengths.tolist() == [8, 2] and targets[:3].tolist() == [ABC.index("b") + 1, ABC.index("i") + 1,
                                                                   ABC.index("n") + 1]
    # a best path with repeats and blanks: b b _ i n n _ _ -> "bin"; a repeat split by a blank is two letters
    path = [3, 3, 0, 10, 15, 15, 0, 0]  # class = 1 + index in " abc...": b 3, i 10, n 15
    logits = torch.full((2, 8, 28), -5.0)
    logits[0, torch.arange(8), torch.tensor(path)] = 5.0
    logits[1, torch.arange(8), torch.tensor([1, 0, 1, 16, 0, 16, 0, 0])] = 5.0  # " " " " "o" "o"
    assert greedy_decode(logits, torch.tensor([8, 8]), ABC) == ["bin", "oo"]
    assert greedy_decode(logits, torch.tensor([3, 8]), ABC)[0] == "b"  # padded frames are not read


def test_the_recipe_is_valid_and_the_task_trains_and_evaluates(tmp_path):
    recipe = load_recipe(REPO / "recipes" / "grid-s1-sentences-ctc.yaml")
    assert recipe.model == "sentence_ctc" and task_for(recipe).metric == "wer"
    shards = write_shards(tmp_path / "syn", splits={"train": (1, 8), "val": (1, 4), "test": (1, 4)}, size=64,
                          min_frames=12, max_frames=16)
    small = load_recipe(REPO / "recipes" / "grid-s1-sentences-ctc.yaml", [
        f"data.shards={shards}", f"output_dir={tmp_path / 'run'}", "data.batch_size=4", "data.num_workers=0",
        "trainer.epochs=2", "trainer.threads=1", "trainer.progress=false", "model_conf.visual_init=null",
        "visual_frontend_conf.widths=[4,4,8,8]", "visual_frontend_conf.stem_channels=4", "backend_conf.hidden=8",
        "model_conf.embed_dim=8"])
    result = train(small)
    assert result.step == 4 and result.metric_name == "wer" and 0.0 <= result.best_metric <= 2.0
    assert all(torch.isfinite(torch.tensor(loss)) for loss in result.losses)
    metrics = evaluate(small)
    assert metrics["clips"] == 4 and metrics["wer"] >= 0.0
    rows = [json.loads(r) for r in (tmp_path / "run" / "eval" / "test" / "per_clip.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and rows[0]["text"].startswith("w")
    # each clip's own error rates, which `avtrain compare` pairs two runs on; GRID-like transcripts of equal length
    # make their mean the corpus rate
    for row in rows:
        counts = error_counts([row["text"]], [row["predicted"]])
        assert row["wer"] == counts["word_errors"] / counts["words"] and 0.0 <= row["cer"]
    assert load_scores(tmp_path / "run")[rows[0]["key"]]["wer"] == rows[0]["wer"]
