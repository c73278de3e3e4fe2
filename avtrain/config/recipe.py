"""The sections every recipe has (data, optimiser, schedule, augmentation, trainer, evaluation) and the base class
of the per-model recipe schemas (:mod:`avtrain.config.models`). Each component is paired with its conf (ESPnet
style): ``optim: adam`` + ``optim_conf: {lr: ...}``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, Field, model_validator

from avtrain.config.components import (
    AdamConf,
    ConstantSchedConf,
    CosineSchedConf,
    NoAugmentConf,
    PaperAugmentConf,
    PlateauSchedConf,
    SGDConf,
    StepSchedConf,
    _Strict,
)


class RecipeError(ValueError):
    """A recipe problem, already phrased as one readable line."""


# Components every model has: {component: {choice: conf class}}.
SHARED_COMPONENTS: dict[str, dict[str, type[BaseModel]]] = {
    "optim": {"sgd": SGDConf, "adam": AdamConf, "adamw": AdamConf},
    "scheduler": {"constant": ConstantSchedConf, "cosine": CosineSchedConf, "step": StepSchedConf,
                  "plateau": PlateauSchedConf},
    "augment": {"paper": PaperAugmentConf, "none": NoAugmentConf},
}


# ---------------------------------------------------------------- sections
class DataConf(_Strict):
    shards: str  # folder with index.json and {split}-NNNNNN.tar (relative paths: to the current directory)
    train_split: str = "train"
    valid_split: str | None = "val"
    test_split: str = "test"
    video_field: Literal["mouth", "face"] = "mouth"
    video_size: int | None = None  # resize frames to this square size before augmentation; None = as stored
    color: Literal["gray", "rgb"] = "gray"  # rgb: (T, 3, H, W) from RGB crops (the bridging speech model)
    mean: float = 0.421
    std: float = 0.165
    # the target mel is standardised as (mel - mel_mean) / mel_std: one value for every bin, or one per bin (a list of
    # n_mels values, e.g. what `avtrain mel-stats SHARDS` measures on the training split)
    mel_mean: float | list[float] = -5.0
    mel_std: float | list[float] = 2.5
    batch_size: int = 32
    eval_batch_size: int = 64
    num_workers: int = 0
    shuffle_buffer: int = 1000
    max_frames: int | None = None  # longer clips are cut (train: random window; eval: centre)
    on_bad_sample: Literal["raise", "skip"] = "raise"  # skip: drop and count, reported per epoch (data/bad_samples.py)
    verify_checksums: bool = True  # refuse a shard whose SHA-256 is not its ledger's (data/verify.py; avprep >= 0.3)

    @model_validator(mode="after")
    def _mel_scaling(self) -> DataConf:
        sizes = {len(v) for v in (self.mel_mean, self.mel_std) if isinstance(v, list)}
        if len(sizes) > 1:
            raise ValueError(f"data.mel_mean and data.mel_std are lists of different lengths {sorted(sizes)}")
        stds = self.mel_std if isinstance(self.mel_std, list) else [self.mel_std]
        if min(stds) <= 0:
            raise ValueError("data.mel_std must be positive")
        return self


class TrainerConf(_Strict):
    epochs: int = 1
    max_steps: int | None = None  # stop (with a checkpoint) after this many optimizer steps in total
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    grad_clip: float | None = 5.0
    log_every: int = 20
    save_every_steps: int | None = None  # mid-epoch checkpoints; the end of each epoch always saves
    val_each_epoch: bool = True
    progress: bool = True
    threads: int | None = None  # torch.set_num_threads on CPU; None = torch's default
    # start from this checkpoint's model weights (e.g. the two-tower second stage); last.pt still wins when resuming
    init_checkpoint: str | None = None
    deterministic: bool = False
    # torch.compile the model (models whose task allows it: lip reading, MTLAM, two-tower); first steps are slow
    compile: bool = False
    # channels-last memory format for the 2D/3D convolutions on CUDA (faster tensor-core convolutions)
    channels_last: bool = False
    # synchronised batch norm across DDP ranks on CUDA (small per-GPU batches, e.g. lrw-mtlam's 4 clips a GPU);
    # one process: nothing to synchronise
    sync_batchnorm: bool = False
    # an exponential moving average of the weights with this decay per step (e.g. 0.999): validated, picked and
    # evaluated instead of the raw weights (avtrain/engine/ema.py); None = off
    ema: float | None = Field(default=None, gt=0.0, lt=1.0)


class EvalConf(_Strict):
    checkpoint: Literal["best", "last"] = "best"
    flip_tta: bool = True
    top_confusions: int = 10
    plot_clips: int = 4
    # speech models: how predicted spectrograms become waveforms (None = the model's own: speech -> [mel] =
    # Griffin-Lim, or [hifigan] where the vocoder extra is installed and the mels are bridging-grid's (it scores
    # better on predicted mels: avtrain.tasks.speech.hifigan.PREFERRED); two_tower -> [linear, exemplar] = the
    # paper's Lin-synth and Mel-synth), Griffin-Lim iterations, the number of training clips whose frames form the
    # Mel-synth exemplar bank, the post-net window of the two-tower sliding prediction (None = data.max_frames, else
    # 16), and an optional cap on evaluated clips (smoke runs)
    synthesis: list[Literal["mel", "hifigan", "linear", "exemplar"]] | None = None
    griffin_lim_iters: int = Field(default=60, ge=0)
    exemplar_clips: int = Field(default=200, ge=1)
    # Mel-synth's nearest-exemplar distance: on the mel frames (the paper's Mel-synth) or the concatenated mel+linear
    exemplar_search: Literal["mel", "mel+linear"] = "mel"
    window: int | None = Field(default=None, ge=1)
    max_clips: int | None = Field(default=None, ge=1)


class Recipe(_Strict):
    """The sections every model shares. A model's own schema (a subclass registered in ``avtrain.config.models``)
    adds the model's components, each as ``<component>: <choice>`` + ``<component>_conf`` (stored validated, as a
    plain dict with defaults filled in), and its cross-section checks."""

    # {component: {choice: conf class}} this model reads, ``model`` included; set by each subclass
    MODEL_COMPONENTS: ClassVar[dict[str, dict[str, type[BaseModel]]]] = {}
    COMPILABLE: ClassVar[bool] = False  # whether trainer.compile may be set

    seed: int = 1
    output_dir: str
    data: DataConf
    model: str
    model_conf: dict[str, Any] = Field(default_factory=dict)
    optim: str = "sgd"
    optim_conf: dict[str, Any] = Field(default_factory=dict)
    scheduler: str = "constant"
    scheduler_conf: dict[str, Any] = Field(default_factory=dict)
    augment: str = "paper"
    augment_conf: dict[str, Any] = Field(default_factory=dict)
    trainer: TrainerConf = Field(default_factory=TrainerConf)
    eval: EvalConf = Field(default_factory=EvalConf)

    @classmethod
    def components(cls) -> dict[str, dict[str, type[BaseModel]]]:
        return {**cls.MODEL_COMPONENTS, **SHARED_COMPONENTS}

    @model_validator(mode="after")
    def _check_components(self) -> Recipe:
        for component, choices in self.components().items():
            name = getattr(self, component)
            if name not in choices:
                raise ValueError(f"{component}: unknown choice {name!r}; known: {', '.join(choices)}")
            conf = choices[name].model_validate(getattr(self, f"{component}_conf"))
            # store the validated conf back as a plain dict with defaults filled in
            object.__setattr__(self, f"{component}_conf", conf.model_dump())
        if self.trainer.compile and not self.COMPILABLE:
            raise ValueError(f"trainer.compile: model {self.model!r} does not support torch.compile (its decoder "
                             "is a Python loop over steps)")
        self.check()
        return self

    def check(self) -> None:
        """Checks across sections, by the model's schema; raise ValueError with one line."""

    def conf(self, component: str) -> BaseModel:
        """The typed conf of a component (``recipe.conf("memory").num_slots``)."""
        return self.components()[component][getattr(self, component)].model_validate(
            getattr(self, f"{component}_conf"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
