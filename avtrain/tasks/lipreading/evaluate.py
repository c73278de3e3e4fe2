"""Evaluation of a trained run: top-1 accuracy (with and without flip TTA), most confused word pairs, memory
statistics and the addressing-vector figure (associative bridge, or MTLAM per level). Writes ``metrics.json``,
``confusions.json``, ``per_clip.jsonl`` (each clip's truth and prediction, for ``avtrain compare``) and
``addressing.png`` under ``<run>/eval/<split>/``."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from avtrain.config import Recipe
from avtrain.data import build_loader, denormalise_video, vocabulary
from avtrain.data.bad_samples import SkipTally
from avtrain.engine.precision import autocast, autocast_dtype, select_device
from avtrain.engine.transfer import to_device
from avtrain.tasks.weights import eval_dir, load_weights


def top_confusions(labels: np.ndarray, preds: np.ndarray, words: dict[int, str], k: int) -> list[dict]:
    pairs = Counter((int(a), int(b)) for a, b in zip(labels, preds) if a != b)
    support = Counter(int(a) for a in labels)
    return [{"true": words.get(a, str(a)), "predicted": words.get(b, str(b)), "count": n,
             "rate": n / support[a]} for (a, b), n in pairs.most_common(k)]


class MemoryStats:
    """How the memory is addressed over a split: sharpness, slot use, agreement of A_src with A_tgt, how close the
    recalled audio feature (from video alone) is to the real one (cosine per frame) against what one constant
    feature would reach (the split's mean real feature, ``recall_cosine_constant``), and the accuracy of the
    real-audio path (an upper bound for what recall could bring)."""

    def __init__(self, num_slots: int):
        self.n = num_slots
        self.frames = 0
        self.sums = {"src_max_prob": 0.0, "tgt_max_prob": 0.0, "src_entropy": 0.0, "tgt_entropy": 0.0,
                     "address_cosine": 0.0, "recall_cosine": 0.0}
        self.used_src: set[int] = set()
        self.used_tgt: set[int] = set()
        self.audio_correct = self.clips = 0
        # sums of the real features and of their unit vectors: the constant's cosine needs no second pass
        self.real_sum: torch.Tensor | float = 0.0
        self.real_unit_sum: torch.Tensor | float = 0.0

    def add(self, out: dict, mask: torch.Tensor, labels: torch.Tensor) -> None:
        src, tgt = out["bridge"].src_address[mask].float(), out["bridge"].tgt_address[mask].float()
        self.frames += len(src)
        for name, a in (("src", src), ("tgt", tgt)):
            self.sums[f"{name}_max_prob"] += float(a.max(-1).values.sum())
            self.sums[f"{name}_entropy"] += float(-(a * a.clamp_min(1e-12).log()).sum())
        self.sums["address_cosine"] += float(torch.nn.functional.cosine_similarity(src, tgt, dim=-1).sum())
        recalled, real = out["bridge"].recalled[mask].float(), out["audio_features"][mask].float()
        self.sums["recall_cosine"] += float(torch.nn.functional.cosine_similarity(recalled, real, dim=-1).sum())
        self.real_sum = self.real_sum + real.sum(0).double().cpu()
        self.real_unit_sum = self.real_unit_sum + torch.nn.functional.normalize(real, dim=-1).sum(0).double().cpu()
        self.used_src.update(src.argmax(-1).tolist())
        self.used_tgt.update(tgt.argmax(-1).tolist())
        self.audio_correct += int((out["logits_audio"].argmax(-1).cpu() == labels.cpu()).sum())
        self.clips += len(labels)

    def summary(self) -> dict:
        s = {k: v / max(self.frames, 1) for k, v in self.sums.items()}
        if self.frames:  # mean over frames of cos(mean real feature, real feature)
            mean = torch.nn.functional.normalize(torch.as_tensor(self.real_sum), dim=0)
            s["recall_cosine_constant"] = float(mean @ torch.as_tensor(self.real_unit_sum)) / self.frames
        s.update(num_slots=self.n, uniform_max_prob=1 / self.n, uniform_entropy=float(np.log(self.n)),
                 slots_used_as_argmax_src=len(self.used_src), slots_used_as_argmax_tgt=len(self.used_tgt),
                 audio_path_top1=self.audio_correct / max(self.clips, 1), frames=self.frames)
        return s


class MTLAMStats:
    """How the MTLAM memories are addressed over a split, per level: sharpness, slot use, how close the recalled
    audio feature comes to the real one; and the accuracy of the audio stream and of the same visual network run
    without its memories (what recall adds to this trained model)."""

    def __init__(self, levels: tuple[int, ...], num_slots: dict[int, int]):
        self.levels, self.n = levels, num_slots
        self.frames = 0
        self.sums = {i: {"max_prob": 0.0, "entropy": 0.0, "recall_cosine": 0.0} for i in levels}
        self.used: dict[int, set[int]] = {i: set() for i in levels}
        self.audio_correct = self.visual_correct = self.visual_clips = self.clips = 0

    def add(self, out: dict, mask: torch.Tensor, labels: torch.Tensor) -> None:
        self.frames += int(mask.sum())
        for i in self.levels:
            a = out["addressing"][i][mask].float()  # (frames, h, N)
            s = self.sums[i]
            s["max_prob"] += float(a.max(-1).values.mean(-1).sum())
            s["entropy"] += float((-(a * a.clamp_min(1e-12).log()).sum(-1)).mean(-1).sum())
            s["recall_cosine"] += float((1.0 - out["memory"][i].losses["recon"]) * mask.sum())
            self.used[i].update(a.mean(1).argmax(-1).tolist())
        labels = labels.to(out["logits_audio"].device)
        self.audio_correct += int((out["logits_audio"].argmax(-1) == labels).sum())
        if "logits_visual" in out:  # absent when vsr_weight is 0 (that pass is skipped)
            self.visual_correct += int((out["logits_visual"].argmax(-1) == labels).sum())
            self.visual_clips += len(labels)
        self.clips += len(labels)

    def summary(self) -> dict:
        per_level = {}
        for i in self.levels:
            d = {k: v / max(self.frames, 1) for k, v in self.sums[i].items()}
            d.update(num_slots=self.n[i], uniform_max_prob=1 / self.n[i], uniform_entropy=float(np.log(self.n[i])),
                     slots_used_as_argmax=len(self.used[i]))
            per_level[str(i)] = d
        return {"levels": per_level, "audio_path_top1": self.audio_correct / max(self.clips, 1),
                "visual_without_memory_top1": self.visual_correct / self.visual_clips if self.visual_clips else None,
                "frames": self.frames}


@torch.no_grad()
def evaluate(recipe: Recipe, task=None, *, split: str | None = None, checkpoint: str | None = None,
             flip_tta: bool | None = None, console: Console | None = None) -> dict:
    """Top-1 (± flip TTA), confusions and, for a model with memory, its statistics and addressing figure; ``task``
    (default: the recipe's) supplies the memory statistics, each clip's addressing and the figure."""
    from avtrain.tasks import task_for

    task = task or task_for(recipe)
    console = console or Console()
    split = split or recipe.data.test_split
    flip_tta = recipe.eval.flip_tta if flip_tta is None else flip_tta
    device = select_device(recipe.trainer.device)
    amp = autocast_dtype(recipe.trainer.precision, device)
    model, path = load_weights(recipe, task, checkpoint, device)
    # names of classes that never occur as a true label in the split come from the shards' vocabulary
    words = dict(enumerate(vocabulary(recipe.data.shards)))
    labels, preds, preds_flip, clips, keys = [], [], [], [], []
    stats: MemoryStats | MTLAMStats | None = task.memory_stats(model)
    has_memory = stats is not None
    want_clips = recipe.eval.plot_clips if has_memory else 0
    skips = SkipTally()
    for batch in build_loader(recipe, split, train=False, fields=task.fields()):
        skips.add(batch, split)
        b = to_device(batch, device, task.host_fields)
        with autocast(device, amp):
            # audio is given only to describe the memory (target addressing or recall quality, audio path);
            # predictions use video
            need_audio = has_memory
            extra = task.inputs(b)
            out = model(b["video"], b["lengths"], b["mask"], b["mel"] if need_audio else None, **extra)
            logits = out["logits"].float()
            if flip_tta:
                logits_flip = logits + model(b["video"].flip(-1), b["lengths"], b["mask"], **extra)["logits"].float()
        labels.append(batch["labels"])
        keys += batch["keys"]
        preds.append(logits.argmax(-1).cpu())
        if flip_tta:
            preds_flip.append(logits_flip.argmax(-1).cpu())
        for lab, text in zip(batch["labels"].tolist(), batch["texts"]):
            words[lab] = text
        if stats is not None:
            stats.add(out, b["mask"], b["labels"])
        if len(clips) < want_clips:
            d = recipe.data
            for i in range(min(len(batch["keys"]), want_clips - len(clips))):
                t = int(batch["lengths"][i])
                frames = denormalise_video(batch["video"][i, :t, 0].numpy(), d)
                clip = {"key": batch["keys"][i], "frames": frames, "word": batch["texts"][i],
                        "label": int(batch["labels"][i]), "pred_id": int(preds[-1][i])}
                clip.update(task.addressing(out, i, t))
                clips.append(clip)
    y = torch.cat(labels).numpy()
    p = torch.cat(preds).numpy()
    out_dir = eval_dir(recipe, split, checkpoint)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {"split": split, "checkpoint": str(path), "samples": int(len(y)), "top1": float((p == y).mean()),
               "skipped": skips.summary()}  # bad samples dropped under data.on_bad_sample: skip
    if flip_tta:
        metrics["top1_flip_tta"] = float((torch.cat(preds_flip).numpy() == y).mean())
    if stats is not None:
        metrics["memory"] = stats.summary()
    confusions = top_confusions(y, p, words, recipe.eval.top_confusions)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out_dir / "confusions.json").write_text(json.dumps(confusions, indent=1))
    flipped = torch.cat(preds_flip).numpy() if flip_tta else None
    with open(out_dir / "per_clip.jsonl", "w") as f:
        for i, key in enumerate(keys):
            row = {"key": key, "label": words.get(int(y[i]), str(y[i])), "predicted": words.get(int(p[i]), str(p[i])),
                   "correct": int(p[i] == y[i])}
            if flipped is not None:
                row["correct_flip_tta"] = int(flipped[i] == y[i])
            f.write(json.dumps(row) + "\n")
    if clips:
        for c in clips:
            c["pred"] = words.get(c["pred_id"], str(c["pred_id"]))
        metrics["addressing_png"] = str(task.plot_addressing(clips, out_dir / "addressing.png"))
    table = Table(title=f"Most confused word pairs ({split}, {len(y)} clips)")
    for col in ("true", "predicted", "count", "rate"):
        table.add_column(col, justify="right" if col in ("count", "rate") else "left")
    for c in confusions:
        table.add_row(c["true"], c["predicted"], str(c["count"]), f"{c['rate']:.1%}")
    console.print(table)
    line = f"top-1 {metrics['top1']:.4f}"
    if flip_tta:
        line += f", with flip TTA {metrics['top1_flip_tta']:.4f}"
    if isinstance(stats, MTLAMStats):
        m = metrics["memory"]
        per = ", ".join(f"#{i} max slot prob {d['max_prob']:.3f} (uniform {d['uniform_max_prob']:.3f}) "
                        f"recall cos {d['recall_cosine']:.2f}" for i, d in m["levels"].items())
        if m["visual_without_memory_top1"] is not None:
            line += f"; without memory {m['visual_without_memory_top1']:.4f}"
        line += f"; audio path top-1 {m['audio_path_top1']:.4f}; {per}"
    elif stats is not None:
        m = metrics["memory"]
        line += (f"; memory: max slot prob {m['src_max_prob']:.3f} (uniform {m['uniform_max_prob']:.3f}), "
                 f"cos(A_src, A_tgt) {m['address_cosine']:.2f}, recall cos {m['recall_cosine']:.2f} "
                 f"(a constant: {m.get('recall_cosine_constant', float('nan')):.2f}), "
                 f"audio path top-1 {m['audio_path_top1']:.4f}")
    console.print(f"[bold]{split}[/bold]: {line} ({path.name}); written to {out_dir}")
    return metrics
