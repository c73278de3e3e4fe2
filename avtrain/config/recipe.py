"""Recipe schema: YAML -> typed, validated config. Each component is paired with its conf (ESPnet style).

A wrong key or type becomes one line naming the file and the dotted key, e.g.
``recipes/x.yaml: memory_conf.num_slot: unknown key (did you mean 'num_slots'?)``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class RecipeError(ValueError):
    """A recipe problem, already phrased as one readable line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------- component confs
class ResNetFrontendConf(_Strict):
    in_channels: int = 1
    stem_channels: int = 64  # Conv3d(1, 64, (5,7,7)) in Table 1
    widths: list[int] = Field(default_factory=lambda: [64, 128, 256, 512])
    blocks: list[int] = Field(default_factory=lambda: [2, 2, 2, 2])  # ResNet-18
    out_dim: int = 512  # a Linear is added only when widths[-1] != out_dim
    activation: Literal["relu", "prelu"] = "prelu"


class ConvAudioFrontendConf(_Strict):
    n_mels: int = 80
    channels: list[int] = Field(default_factory=lambda: [128, 256])  # two stride-2 convs, Table 1
    residual_blocks: int = 1
    out_dim: int = 512


class MemoryConf(_Strict):
    num_slots: int = 88  # N; 0 = baseline without memory
    scale: float = 16.0  # r
    variant: Literal["paper", "official"] = "paper"
    init_std: float = 0.5
    save_weight: float = 1.0
    bridge_weight: float = 1.0


class BiGRUBackendConf(_Strict):
    hidden: int = 512
    layers: int = 2
    dropout: float = 0.0


class LipReadingConf(_Strict):
    num_classes: int = 500
    embed_dim: int = 512  # C = D
    fusion_dropout: float = 0.5
    audio_task_weight: float = 1.0  # weight of g(h(f_src ⊕ f_tgt); y) in Eq. 7


def _check_split(name: str, channels: int, kernel_sizes: list[int]) -> None:
    # the kernel branches of a multi-branch convolution share its output channels equally
    if not kernel_sizes or channels % len(kernel_sizes):
        raise ValueError(f"{name} {channels} does not split over {len(kernel_sizes)} kernel branches "
                         f"{kernel_sizes}")


class DCTCNConf(_Strict):
    # defaults: the public DC-TCN LRW configuration (the MTLAM paper says only "4 DC-TCN layers"); docs/mtlam.md
    num_levels: int = 4
    layers_per_level: int = 3
    growth_rate: int = 384
    width: int = 512
    kernel_sizes: list[int] = Field(default_factory=lambda: [3, 5, 7])
    dilations: list[int] = Field(default_factory=lambda: [1, 2, 5])
    dropout: float = 0.2
    activation: Literal["relu", "prelu", "swish"] = "swish"
    squeeze_excitation: bool = True

    @model_validator(mode="after")
    def _branches_split(self) -> "DCTCNConf":
        _check_split("growth_rate", self.growth_rate, self.kernel_sizes)
        return self


class MSTCNConf(_Strict):
    num_levels: int = 4
    width: int = 768
    kernel_sizes: list[int] = Field(default_factory=lambda: [3, 5, 7])
    dilations: list[int] | None = None  # one per level; None = 1, 2, 4, ...
    dropout: float = 0.2
    activation: Literal["relu", "prelu", "swish"] = "prelu"

    @model_validator(mode="after")
    def _branches_split(self) -> "MSTCNConf":
        _check_split("width", self.width, self.kernel_sizes)
        if self.dilations is not None and len(self.dilations) != self.num_levels:
            raise ValueError(f"dilations: one per level ({self.num_levels}), got {self.dilations}")
        return self


class MTLAMMemoryConf(_Strict):
    levels: list[int] = Field(default_factory=lambda: [1, 2, 3])  # Table 1; [] = baseline (no audio, no memory)
    num_heads: int = 8  # h, N: not in the paper; MVM's values
    num_slots: int = 112
    key_dim: int | None = None  # None = the level's width (the paper's M_k in R^{h x N x D})
    scale: float = 16.0
    init_std: float = 0.5
    recon_weight: float = 1.0  # L_recon, Eq. 4
    contrast_weight: float = 1.0  # L_cont, Eq. 5


class MTLAMConf(_Strict):
    num_classes: int = 500
    embed_dim: int = 512
    head_dropout: float = 0.0
    vsr_weight: float = 1.0  # L_cls^v (visual stream without memory); 0 skips that pass
    asr_weight: float = 1.0  # L_cls^a
    fused_weight: float = 1.0  # L_cls^{v,a}, the prediction used at inference


# TacotronDecoder's keywords (avtrain/models/tacotron.py) a recipe may set under model_conf.decoder; a test keeps the
# two in step.
DECODER_KEYS = ("frames_per_step", "prenet_dims", "attention_rnn", "decoder_rnn", "attention_dim", "location_filters",
                "location_kernel", "attention_dropout", "decoder_dropout", "postnet_channels", "postnet_kernel",
                "postnet_layers")


class SpeechConf(_Strict):
    """The bridging speech model (supp. Table 2): :meth:`SpeechModel.build`'s keywords but the memory's."""
    in_channels: int = 3
    n_mels: int = 80
    embed_dim: int = 512
    width: float = 1.0  # scales every Conv3d width (CPU-sized recipes)
    residual: bool = False
    audio_channels: list[int] | None = None  # None = [128, 256], Table 2
    decoder: dict[str, Any] = Field(default_factory=dict)  # TacotronDecoder keywords (prenet_dims, attention_rnn...)
    fusion_dropout: float = 0.0
    audio_path: bool = True  # decode h(f_src ⊕ f_tgt) too (Eq. 7's audio term)

    @model_validator(mode="after")
    def _decoder_keys(self) -> "SpeechConf":
        unknown = sorted(set(self.decoder) - set(DECODER_KEYS))
        if unknown:
            raise ValueError(f"decoder: unknown key {unknown[0]!r}{_suggest(unknown[0], list(DECODER_KEYS))}")
        return self


class TwoTowerConf(_Strict):
    """The two-tower model (Ephrat et al. 2017): :class:`TwoTowerModel`'s keywords."""
    k: int = Field(default=9, ge=1)
    n_mels: int = 80
    n_linear: int = 321  # n_fft // 2 + 1: 321 for the two-tower preset (n_fft 640), 251 for TCD-TIMIT (500)
    frames_per_step: int = 4
    width: float = 1.0
    bottleneck_ratio: int = 4
    use_pixels: bool = True
    use_flow: bool = True
    fc_dim: int = 1024
    conv_dropout: float = 0.25
    fc_dropout: float = 0.5
    slope: float = 0.2
    output_activation: Literal["tanh", "sigmoid", "none"] = "tanh"
    loss: Literal["l1", "l2"] = "l2"
    postnet: bool = True
    cbhg: dict[str, Any] = Field(default_factory=dict)
    # the paper's second stage: "we keep all convolutional layers of the CNN frozen during training of the second
    # network" -- with trainer.init_checkpoint = the first stage's checkpoint
    freeze_towers: bool = False

    @model_validator(mode="after")
    def _one_tower(self) -> "TwoTowerConf":
        if not (self.use_pixels or self.use_flow):
            raise ValueError("use_pixels and use_flow are both false: at least one tower is needed")
        return self


class SGDConf(_Strict):
    lr: float = 0.03
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0


class AdamConf(_Strict):
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0


class ConstantSchedConf(_Strict):
    warmup_epochs: int = 0


class CosineSchedConf(_Strict):
    warmup_epochs: int = 0
    min_lr_ratio: float = 0.0


class StepSchedConf(_Strict):
    milestones: list[int] = Field(default_factory=list)
    gamma: float = 0.1


class PlateauSchedConf(_Strict):
    factor: float = 0.5
    patience: int = 5
    min_lr: float = 0.0


class PaperAugmentConf(_Strict):
    crop: int | None = None  # random crop size (centre crop at test); None = no crop
    flip: bool = True
    erase_prob: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.33)
    erase_ratio: tuple[float, float] = (0.3, 3.3)


class NoAugmentConf(_Strict):
    crop: int | None = None


COMPONENTS: dict[str, dict[str, type[BaseModel]]] = {
    "visual_frontend": {"resnet18": ResNetFrontendConf},
    "audio_frontend": {"conv2d": ConvAudioFrontendConf},
    "memory": {"bridge": MemoryConf, "mtlam": MTLAMMemoryConf},
    "backend": {"bigru": BiGRUBackendConf},  # lipreading only; mtlam uses temporal instead
    "temporal": {"dctcn": DCTCNConf, "mstcn": MSTCNConf},  # mtlam only
    "model": {"lipreading": LipReadingConf, "mtlam": MTLAMConf, "speech": SpeechConf, "two_tower": TwoTowerConf},
    "optim": {"sgd": SGDConf, "adam": AdamConf, "adamw": AdamConf},
    "scheduler": {
        "constant": ConstantSchedConf,
        "cosine": CosineSchedConf,
        "step": StepSchedConf,
        "plateau": PlateauSchedConf,
    },
    "augment": {"paper": PaperAugmentConf, "none": NoAugmentConf},
}


# Each model reads one memory kind's conf; a mismatch would silently train with defaults for the other.
MODEL_MEMORY = {"lipreading": "bridge", "mtlam": "mtlam", "speech": "bridge"}
# Models that regress spectrograms (lower validation loss is better, scored as speech); the others classify words.
SPEECH_MODELS = ("speech", "two_tower")


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
    mel_mean: float = -5.0
    mel_std: float = 2.5
    batch_size: int = 32
    eval_batch_size: int = 64
    num_workers: int = 0
    shuffle_buffer: int = 1000
    max_frames: int | None = None  # longer clips are cut (train: random window; eval: centre)


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


class EvalConf(_Strict):
    checkpoint: Literal["best", "last"] = "best"
    flip_tta: bool = True
    top_confusions: int = 10
    plot_clips: int = 4
    # speech models: how predicted spectrograms become waveforms (None = the model's own: speech -> [mel],
    # two_tower -> [linear, exemplar] = the paper's Lin-synth and Mel-synth), Griffin-Lim iterations, the number of
    # training clips whose frames form the Mel-synth exemplar bank, the post-net window of the two-tower sliding
    # prediction (None = data.max_frames, else 16), and an optional cap on evaluated clips (smoke runs)
    synthesis: list[Literal["mel", "linear", "exemplar"]] | None = None
    griffin_lim_iters: int = Field(default=60, ge=0)
    exemplar_clips: int = Field(default=200, ge=1)
    window: int | None = Field(default=None, ge=1)
    max_clips: int | None = Field(default=None, ge=1)


class Recipe(_Strict):
    seed: int = 1
    output_dir: str
    data: DataConf
    visual_frontend: str = "resnet18"
    visual_frontend_conf: dict[str, Any] = Field(default_factory=dict)
    audio_frontend: str = "conv2d"
    audio_frontend_conf: dict[str, Any] = Field(default_factory=dict)
    memory: str = "bridge"
    memory_conf: dict[str, Any] = Field(default_factory=dict)
    backend: str = "bigru"
    backend_conf: dict[str, Any] = Field(default_factory=dict)
    temporal: str = "dctcn"
    temporal_conf: dict[str, Any] = Field(default_factory=dict)
    model: str = "lipreading"
    model_conf: dict[str, Any] = Field(default_factory=dict)
    optim: str = "sgd"
    optim_conf: dict[str, Any] = Field(default_factory=dict)
    scheduler: str = "constant"
    scheduler_conf: dict[str, Any] = Field(default_factory=dict)
    augment: str = "paper"
    augment_conf: dict[str, Any] = Field(default_factory=dict)
    trainer: TrainerConf = Field(default_factory=TrainerConf)
    eval: EvalConf = Field(default_factory=EvalConf)

    @model_validator(mode="after")
    def _check_components(self) -> "Recipe":
        for component, choices in COMPONENTS.items():
            name = getattr(self, component)
            if name not in choices:
                raise ValueError(f"{component}: unknown choice {name!r}; known: {', '.join(choices)}")
            conf = choices[name].model_validate(getattr(self, f"{component}_conf"))
            # store the validated conf back as a plain dict with defaults filled in
            object.__setattr__(self, f"{component}_conf", conf.model_dump())
        _check_pairing(self.model, self.memory)
        if self.model == "speech":
            want = 3 if self.data.color == "rgb" else 1
            if self.model_conf["in_channels"] != want:
                raise ValueError(f"model_conf.in_channels is {self.model_conf['in_channels']} but data.color "
                                 f"{self.data.color!r} gives {want} channel(s)")
        if self.model == "two_tower" and (self.augment != "none" or self.augment_conf.get("crop")
                                          or self.data.video_size or self.data.color != "gray"):
            raise ValueError("model two_tower reads optical flow aligned with its gray frames: use augment: none "
                             "without crop, no data.video_size and data.color gray (a crop, flip or resize of the "
                             "frames would have to be applied to the flow too)")
        return self

    def conf(self, component: str) -> BaseModel:
        """The typed conf of a component (``recipe.conf("memory").num_slots``)."""
        return COMPONENTS[component][getattr(self, component)].model_validate(getattr(self, f"{component}_conf"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _check_pairing(model: str, memory: str) -> None:
    want = MODEL_MEMORY.get(model)
    if want is not None and memory != want:
        raise ValueError(f"model {model!r} needs memory {want!r} (got memory {memory!r})")


# ---------------------------------------------------------------- loading
def _suggest(name: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _first_error(err: ValidationError) -> str:
    e = err.errors()[0]
    loc = [str(p) for p in e["loc"]]
    msg = e["msg"]
    if e["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    key = ".".join(loc)
    if e["type"] == "extra_forbidden":
        return f"{key}: unknown key{_suggest(loc[-1], _known_keys(loc[:-1]))}"
    if e["type"] == "missing":
        return f"{key}: required key is missing"
    got = e.get("input")
    shown = repr(got) if not isinstance(got, dict) else "a mapping"
    return f"{key}: {msg} (got {shown})" if key else msg


def _known_keys(path: list[str]) -> list[str]:
    model: Any = Recipe
    for p in path:
        field = getattr(model, "model_fields", {}).get(p)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def validate_recipe(data: Any, source: str = "<recipe>") -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a YAML mapping, got {type(data).__name__}")
    # a model/memory mismatch first: it would otherwise surface as a misleading unknown key in the other's conf
    try:
        _check_pairing(data.get("model", Recipe.model_fields["model"].default),
                       data.get("memory", Recipe.model_fields["memory"].default))
    except ValueError as err:
        raise RecipeError(f"{source}: {err}") from None
    # component confs are checked separately so the error names e.g. "memory_conf.num_slot"
    for component, choices in COMPONENTS.items():
        name = data.get(component, Recipe.model_fields[component].default)
        conf = data.get(f"{component}_conf", {}) or {}
        if name not in choices:
            raise RecipeError(f"{source}: {component}: unknown choice {name!r}; known: {', '.join(choices)}")
        if not isinstance(conf, dict):
            raise RecipeError(f"{source}: {component}_conf: expected a mapping (got {conf!r})")
        try:
            choices[name].model_validate(conf)
        except ValidationError as err:
            e = err.errors()[0]
            key = ".".join([f"{component}_conf", *[str(p) for p in e["loc"]]])
            if e["type"] == "extra_forbidden":
                allowed = list(choices[name].model_fields)
                raise RecipeError(f"{source}: {key}: unknown key for {component} {name!r}"
                                  f"{_suggest(str(e['loc'][-1]), allowed)}") from None
            if e["type"] == "value_error":  # a check across keys (model_validator): its message names them
                raise RecipeError(f"{source}: {key}: {e['msg'].removeprefix('Value error, ')}") from None
            raise RecipeError(f"{source}: {key}: {e['msg']} (got {e.get('input')!r})") from None
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(f"{source}: {_first_error(err)}") from None


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str = "--set") -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides; values are parsed as YAML (``3``, ``true``, ``[1, 2]``, ``null``)."""
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"{source} {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {} if node.get(p) is None else node[p]
                if not isinstance(node[p], dict):
                    raise RecipeError(f"{source} {item!r}: {p} is not a mapping")
            node = node[p]
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise RecipeError(f"{path}:{where} not valid YAML: {getattr(err, 'problem', err)}") from None
    data = apply_overrides(data or {}, overrides or [])
    return validate_recipe(data, str(path) + (" (with --set)" if overrides else ""))
