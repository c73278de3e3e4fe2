"""The component confs a recipe pairs with its component choices (ESPnet style: ``memory: bridge`` +
``memory_conf: {...}``). Which components a model reads, and which choices it accepts, is its schema
(:mod:`avtrain.config.models`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator


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
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)  # on every cross-entropy term; not in the paper
    # a word-boundary indicator (1 on the word's frames, 0 on context) beside each frame's features at the back end's
    # input (Ma et al. 2022); for word clips stored with context (avprep grid --word-context). Not in the paper
    boundary: bool = False
    # mixup of training clips, the alpha of Beta(alpha, alpha) (Ma et al. 2022: 0.4); 0 = off. Not in the paper
    mixup: float = Field(default=0.0, ge=0.0)


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
    def _branches_split(self) -> DCTCNConf:
        _check_split("growth_rate", self.growth_rate, self.kernel_sizes)
        return self


class SentenceCTCConf(_Strict):
    """Sentence lip reading with CTC over characters (the word model's front, a per-frame BiGRU)."""
    embed_dim: int = 512  # the front's output width (C)
    alphabet: Literal["english"] = "english"  # space and a-z; class 0 is CTC's blank
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # before the character classifier
    # a word lip-reading run's checkpoint (same visual front) whose front weights start this one
    visual_init: str | None = None


class MSTCNConf(_Strict):
    num_levels: int = 4
    width: int = 768
    kernel_sizes: list[int] = Field(default_factory=lambda: [3, 5, 7])
    dilations: list[int] | None = None  # one per level; None = 1, 2, 4, ...
    dropout: float = 0.2
    activation: Literal["relu", "prelu", "swish"] = "prelu"

    @model_validator(mode="after")
    def _branches_split(self) -> MSTCNConf:
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
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)  # on every L_cls term; not in the paper
    # the word-boundary indicator, as LipReadingConf's; here a learned vector added to each word frame's front-end
    # feature, so the memories' level-0 width stays embed_dim. Not in the paper
    boundary: bool = False
    mixup: float = Field(default=0.0, ge=0.0)  # as LipReadingConf's, the mel blended too. Not in the paper


class TacotronDecoderConf(_Strict):
    """TacotronDecoder's keywords (avtrain/models/tacotron.py) but its input and output widths; a test keeps the two
    in step. Defaults: Tacotron 2's."""
    type: Literal["tacotron"] = "tacotron"
    frames_per_step: int = 4
    prenet_dims: list[int] = Field(default_factory=lambda: [256, 256])
    attention_rnn: int = 1024
    decoder_rnn: int = 1024
    attention_dim: int = 128
    location_filters: int = 32
    location_kernel: int = 31
    attention_dropout: float = 0.1
    decoder_dropout: float = 0.1
    postnet_channels: int = 512
    postnet_kernel: int = 5
    postnet_layers: int = 5


class AlignedDecoderConf(_Strict):
    """AlignedDecoder's keywords (avtrain/models/aligned_decoder.py) but its input and output widths: the
    frame-synchronous non-autoregressive decoder (an extension, docs/speech.md)."""
    type: Literal["aligned"] = "aligned"
    frames_per_step: int = Field(default=4, ge=1)
    channels: int = Field(default=256, ge=2)
    conv_layers: int = Field(default=2, ge=0)
    kernel: int = Field(default=5, ge=1)
    gru_layers: int = Field(default=1, ge=0)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    postnet_channels: int = 512
    postnet_kernel: int = 5
    postnet_layers: int = 5
    # Tacotron 2's 0.5 before every BatchNorm shifts the variance the BN statistics saw in training away from
    # inference's: measured on the synthetic bar task, the eval-mode post-net output was twice as far off as in training
    postnet_dropout: float = Field(default=0.5, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _even(self) -> AlignedDecoderConf:
        if self.gru_layers and self.channels % 2:
            raise ValueError(f"decoder.channels {self.channels} must be even: the BiGRU's two directions share it")
        if self.kernel % 2 == 0:
            raise ValueError(f"decoder.kernel {self.kernel} must be odd (same-length convolutions)")
        return self


def _decoder_type(value: Any) -> str:
    # recipes written before ``decoder.type`` existed mean Tacotron 2
    return (value.get("type", "tacotron") if isinstance(value, dict) else getattr(value, "type", "tacotron"))


DecoderConf = Annotated[Annotated[TacotronDecoderConf, Tag("tacotron")] | Annotated[AlignedDecoderConf, Tag("aligned")],
                        Discriminator(_decoder_type)]
# each decoder conf's keywords of its module (all fields but the discriminator)
DECODER_KEYS = tuple(k for k in TacotronDecoderConf.model_fields if k != "type")
ALIGNED_DECODER_KEYS = tuple(k for k in AlignedDecoderConf.model_fields if k != "type")


class CBHGConf(_Strict):
    """The CBHG post-net's keywords (avtrain/models/cbhg.py) but its input and output widths."""
    bank_size: int = 8
    bank_channels: int = 128
    projections: tuple[int, int] = (256, 80)  # the last is set to the mel width (the residual add needs it)
    highway_layers: int = 4
    highway_dim: int = 128
    gru_dim: int = 128


class SpeechResNetConf(_Strict):
    """The lip-reading visual front (Conv3d stem + 2D ResNet trunk per frame) as the speech model's front."""
    stem_channels: int = 64
    widths: list[int] = Field(default_factory=lambda: [64, 128, 256, 512])
    blocks: list[int] = Field(default_factory=lambda: [2, 2, 2, 2])
    activation: Literal["relu", "prelu"] = "prelu"


class WordLossConf(_Strict):
    """An auxiliary per-frame word classification of the visual features (training only; inference never uses
    it): 0 = no word, else the word, from the samples' word alignments (``json.words``)."""
    weight: float = Field(default=0.0, ge=0.0)  # 0 = off
    vocabulary: Literal["grid"] = "grid"  # manifests/grid/vocab.txt, GRID's 51 words


class SpeechConf(_Strict):
    """The bridging speech model (supp. Table 2): :meth:`SpeechModel.build`'s keywords but the memory's."""
    in_channels: int = 3
    n_mels: int = 80
    embed_dim: int = 512
    # the visual front: Table 2's Conv3d stack (the paper's) or the lip-reading model's ResNet front (``resnet``),
    # which a lip-reading checkpoint can initialise (``visual_init``)
    visual: Literal["table2", "resnet"] = "table2"
    resnet: SpeechResNetConf = Field(default_factory=SpeechResNetConf)
    # a lip-reading run's checkpoint (model: lipreading, same ResNet front) whose visual front weights start this one
    visual_init: str | None = None
    width: float = 1.0  # scales every Conv3d width of Table 2's stack (CPU-sized recipes)
    residual: bool = False
    audio_channels: list[int] | None = None  # None = [128, 256], Table 2
    # type: tacotron (the paper's, autoregressive) or aligned (frame-synchronous, non-autoregressive; an extension)
    decoder: DecoderConf = Field(default_factory=TacotronDecoderConf)
    # pad the last Conv3d spatially too, so that crops smaller than 96 x 96 (e.g. a 64 x 64 mouth) keep a map to
    # average; Table 2's is unpadded (1 x 1 for the 96 x 96 face)
    pad_last_conv: bool = False
    fusion_dropout: float = 0.0
    audio_path: bool = True  # decode h(f_src ⊕ f_tgt) too (Eq. 7's audio term)
    word_loss: WordLossConf = Field(default_factory=WordLossConf)
    # weight of an L1 on the frame-to-frame differences of the recall path's post-net mel (its temporal modulation,
    # which ESTOI scores band by band); 0 = off
    delta_weight: float = Field(default=0.0, ge=0.0)

    @model_validator(mode="after")
    def _init_needs_resnet(self) -> SpeechConf:
        if self.visual_init and self.visual != "resnet":
            raise ValueError("model_conf.visual_init loads a lip-reading model's ResNet front: set visual: resnet")
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
    cbhg: CBHGConf = Field(default_factory=CBHGConf)
    # the paper's second stage: "we keep all convolutional layers of the CNN frozen during training of the second
    # network" -- with trainer.init_checkpoint = the first stage's checkpoint
    freeze_towers: bool = False

    @model_validator(mode="after")
    def _one_tower(self) -> TwoTowerConf:
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
    interval: Literal["epoch", "step"] = "epoch"  # step: the factor moves after every optimizer step


class CosineSchedConf(_Strict):
    warmup_epochs: int = 0
    min_lr_ratio: float = 0.0
    # epoch: the rate changes once per epoch (a staircase); step: after every optimizer step (a smooth curve),
    # the same curve sampled at fractions of an epoch
    interval: Literal["epoch", "step"] = "epoch"


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
    # time masking: ``time_masks`` spans of 0..``time_mask`` frames per clip set to the mean frame (0 after
    # normalisation), as SpecAugment masks time on spectrograms; 0 = off
    time_mask: int = Field(default=0, ge=0)
    time_masks: int = Field(default=1, ge=0)


class NoAugmentConf(_Strict):
    crop: int | None = None


__all__ = [name for name, obj in dict(globals()).items()
           if isinstance(obj, type) and issubclass(obj, BaseModel) and name.endswith("Conf")] + [
    "DECODER_KEYS", "ALIGNED_DECODER_KEYS", "DecoderConf"]
