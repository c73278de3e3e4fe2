"""Sentence lip reading with CTC over characters (LipNet's objective, Assael et al. 2016): per-frame character
scores from video alone, CTC in training, greedy decoding (best path, repeats merged, blanks dropped) to words;
word error rate picks ``best.pt`` and is what evaluation reports, beside the character error rate.

GRID's sentence shards carry their transcript (``json.text``); the 27 characters are space and a-z, class 0 CTC's
blank. LipNet's 4.8 % WER (GRID, overlapped speakers) is the anchor docs/results.md compares with.
"""

from __future__ import annotations

import json
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from avtrain.data import build_loader
from avtrain.data.bad_samples import SkipTally
from avtrain.engine.precision import autocast, autocast_dtype, select_device
from avtrain.engine.transfer import to_device
from avtrain.tasks.base import Task
from avtrain.tasks.text import edit_distance
from avtrain.tasks.weights import eval_dir, load_weights

ALPHABETS = {"english": " abcdefghijklmnopqrstuvwxyz"}


def encode(texts: list[str], alphabet: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Transcripts -> (concatenated class indices, lengths), host tensors for ``F.ctc_loss``; characters outside the
    alphabet are dropped (GRID's transcripts have none)."""
    index = {c: i + 1 for i, c in enumerate(alphabet)}
    labels = [[index[c] for c in " ".join(t.lower().split()) if c in index] for t in texts]
    return torch.tensor([i for lab in labels for i in lab], dtype=torch.long), \
        torch.tensor([len(lab) for lab in labels], dtype=torch.long)


def greedy_decode(logits: torch.Tensor, lengths: torch.Tensor, alphabet: str) -> list[str]:
    """Best path per clip: the top class of every real frame, repeats merged, blanks dropped."""
    best = logits.argmax(-1).cpu()
    out = []
    for path, n in zip(best, lengths.tolist()):
        chars, previous = [], 0
        for c in path[:n].tolist():
            if c != previous and c != 0:
                chars.append(alphabet[c - 1])
            previous = c
        out.append(" ".join("".join(chars).split()))
    return out


def error_counts(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """Summed word and character errors and reference lengths (the sums validation adds over batches and ranks)."""
    sums = {"word_errors": 0.0, "words": 0.0, "char_errors": 0.0, "chars": 0.0}
    for ref, hyp in zip(references, hypotheses):
        ref = " ".join(ref.lower().split())
        sums["word_errors"] += edit_distance(ref.split(), hyp.split())
        sums["words"] += len(ref.split())
        sums["char_errors"] += edit_distance(ref, hyp)
        sums["chars"] += len(ref)
    return sums


class SentenceCTCTask(Task):
    metric = "wer"
    higher_is_better = False
    whole_clip_validation = True

    def __init__(self, recipe):
        super().__init__(recipe)
        self.alphabet = ALPHABETS[recipe.model_conf["alphabet"]]

    def build_model(self) -> nn.Module:
        from avtrain.models.ctc import SentenceLipReader

        r, m = self.recipe, self.recipe.model_conf
        return SentenceLipReader.build(len(self.alphabet) + 1, m["embed_dim"], r.visual_frontend_conf,
                                       r.backend_conf, m["dropout"])

    def init_weights(self, model: nn.Module) -> None:
        path = self.recipe.model_conf["visual_init"]
        if path:
            from avtrain.tasks.visual_init import load_visual_front

            load_visual_front(model.visual, path)

    def losses(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = model(batch["video"], batch["lengths"], batch["mask"])
        targets, target_lengths = encode(batch["texts"], self.alphabet)
        log_probs = F.log_softmax(logits.float(), -1).transpose(0, 1)  # (T, B, C)
        loss = F.ctc_loss(log_probs, targets.to(logits.device), batch["lengths"], target_lengths, blank=0,
                          zero_infinity=True)
        return loss, {"ctc": loss.detach(), "total": loss.detach()}

    def validation_sums(self, model: nn.Module, batch: dict) -> dict[str, float]:
        logits = model(batch["video"], batch["lengths"], batch["mask"])
        sums = error_counts(batch["texts"], greedy_decode(logits, batch["lengths"], self.alphabet))
        sums["ctc"] = float(self.losses(model, batch)[0]) * len(batch["keys"])
        sums["samples"] = float(len(batch["keys"]))
        return sums

    def finish_validation(self, sums: dict[str, float]) -> dict[str, float]:
        return {"wer": sums.get("word_errors", 0.0) / max(sums.get("words", 0.0), 1.0),
                "cer": sums.get("char_errors", 0.0) / max(sums.get("chars", 0.0), 1.0),
                "ctc": sums.get("ctc", 0.0) / max(sums.get("samples", 0.0), 1.0), "samples": sums.get("samples", 0.0)}

    def validation_line(self, val: dict[str, float]) -> str:
        return f"val WER {val['wer']:.4f} (selects best.pt), CER {val['cer']:.4f}, CTC {val['ctc']:.3f}"

    @torch.no_grad()
    def evaluate(self, *, split: str | None = None, checkpoint: str | None = None, console: Console | None = None,
                 **_: Any) -> dict:
        """Greedy decoding of every clip of ``split`` from video alone: WER and CER; each clip's transcript,
        hypothesis and own ``wer`` / ``cer`` in ``per_clip.jsonl`` (what ``avtrain compare`` pairs runs on), and
        ``metrics.json``, under ``<run>/eval/<split>/``."""
        recipe, console = self.recipe, console or Console()
        split = split or recipe.data.test_split
        device = select_device(recipe.trainer.device)
        amp = autocast_dtype(recipe.trainer.precision, device)
        model, path = load_weights(recipe, self, checkpoint, device)
        out_dir = eval_dir(recipe, split, checkpoint)
        out_dir.mkdir(parents=True, exist_ok=True)
        sums: dict[str, float] = {}
        skips = SkipTally()
        with open(out_dir / "per_clip.jsonl", "w") as rows:
            for batch in build_loader(recipe, split, train=False, fields=self.fields()):
                skips.add(batch, split)
                b = to_device(batch, device, self.host_fields)
                with autocast(device, amp):
                    logits = model(b["video"], b["lengths"], b["mask"])
                hyps = greedy_decode(logits.float(), batch["lengths"], self.alphabet)
                sums["samples"] = sums.get("samples", 0.0) + len(hyps)
                for key, ref, hyp in zip(batch["keys"], batch["texts"], hyps):
                    clip = error_counts([ref], [hyp])  # the corpus rates are sums of these
                    for k, v in clip.items():
                        sums[k] = sums.get(k, 0.0) + v
                    rows.write(json.dumps({"key": key, "text": ref, "predicted": hyp,
                                           "wer": clip["word_errors"] / max(clip["words"], 1.0),
                                           "cer": clip["char_errors"] / max(clip["chars"], 1.0)}) + "\n")
        if not sums.get("samples"):
            raise FileNotFoundError(f"no clips in split {split!r} of {recipe.data.shards}")
        metrics = {"split": split, "checkpoint": str(path), "clips": int(sums["samples"]),
                   "wer": sums["word_errors"] / max(sums["words"], 1.0),
                   "cer": sums["char_errors"] / max(sums["chars"], 1.0), "skipped": skips.summary()}
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
        console.print(f"{split}: WER {metrics['wer']:.4f}, CER {metrics['cer']:.4f} on {metrics['clips']} clips "
                      f"(greedy decoding, video only); written to {out_dir}")
        return metrics
