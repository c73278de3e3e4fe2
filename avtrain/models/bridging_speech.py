"""Speech reconstruction from silent video with the associative bridge (Kim et al. 2021, Sec. 4.2, supp. Table 2).

f_src = visual(video): 16 Conv3d layers (Table 2's kernels, widths and strides) -> BiLSTM -> (B, T, 512).
f_tgt = audio(mel): the lip-reading audio module with one extra 5x5 conv before its residual block -> (B, T, 512).
v_tgt = memory recall from f_src (AssociativeBridge, N slots), fused by one Linear h(f_src ⊕ v_tgt) (B, T, 512),
decoded into 4T mel frames (4 frames per video-frame step) and a post-net: by Tacotron 2's decoder (``decoder.type:
tacotron``, the paper's) or by the frame-synchronous non-autoregressive decoder (``aligned``,
avtrain/models/aligned_decoder.py, an extension; docs/speech.md).

In training (N > 0) the audio path decodes h(f_src ⊕ f_tgt) through the same fusion and decoder too; the task
(avtrain/tasks/speech/losses.py) turns the outputs into Eq. 7-8 with g = L1. N = 0 is the baseline (Lip2Wav-like):
the decoder reads f_src directly. Tacotron: teacher forcing whenever a target mel is given; :meth:`SpeechModel.infer`
runs free from video alone.
Aligned: never reads the target mel, so training decodes exactly what inference does.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from avtrain.models.aligned_decoder import AlignedDecoder
from avtrain.models.frontends import AudioFrontend, VisualFrontend
from avtrain.models.masked import to_device_async
from avtrain.models.memory import AssociativeBridge
from avtrain.models.tacotron import TacotronDecoder

# Table 2, visual module: (temporal-spatial kernel, channels, spatial stride) per Conv3d; temporal stride is 1.
TABLE2_VISUAL: tuple[tuple[int, int, int], ...] = (
    (5, 32, 2), (3, 32, 1), (3, 32, 1),
    (3, 64, 2), (3, 64, 1), (3, 64, 1),
    (3, 128, 2), (3, 128, 1), (3, 128, 1),
    (3, 256, 2), (3, 256, 1), (3, 256, 1),
    (3, 512, 2), (3, 512, 1), (3, 512, 1),
    (3, 512, 1),  # no spatial padding: H/32 - 2 (1 x 1 for a 96 x 96 face)
)


class Conv3dStack(nn.Module):
    """Table 2's 3D-conv stack, each conv followed by BN3d + ReLU.

    ``residual`` adds the input to the shape-preserving layers, as Lip2Wav's encoder (the paper's baseline [39])
    does; Table 2 does not show skips, so it is off by default. ``width`` scales every channel count (tests).
    """

    def __init__(self, in_channels: int = 3, layers: tuple[tuple[int, int, int], ...] = TABLE2_VISUAL,
                 width: float = 1.0, residual: bool = False, pad_last: bool = False):
        super().__init__()
        self.convs, self.norms, self.skips = nn.ModuleList(), nn.ModuleList(), []
        cin = in_channels
        for i, (k, c, s) in enumerate(layers):
            cout = max(1, int(round(c * width)))
            last = i == len(layers) - 1
            space = k // 2 if pad_last or not last else 0
            pad = (k // 2, space, space)
            self.convs.append(nn.Conv3d(cin, cout, k, (1, s, s), pad, bias=False))
            self.norms.append(nn.BatchNorm3d(cout))
            self.skips.append(residual and s == 1 and cin == cout and not last)
            cin = cout
        self.out_channels = cin

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, T, C, H, W) -> (B, T, C', H', W')."""
        x = video.transpose(1, 2)
        for conv, norm, skip in zip(self.convs, self.norms, self.skips):
            y = F.relu(norm(conv(x)))
            x = x + y if skip else y
        return x.transpose(1, 2)


class SpeechVisualEncoder(nn.Module):
    """Visual front -> BiLSTM over the real frames. The front is Table 2's Conv3d stack followed by a spatial mean (a
    no-op at 1 x 1, i.e. for 96 x 96 input), or with ``resnet`` (the keywords of :class:`SpeechResNetConf`) the
    lip-reading model's front: Conv3d stem + a 2D ResNet trunk per frame, whose weights a lip-reading checkpoint can
    provide (``model_conf.visual_init``)."""

    def __init__(self, in_channels: int = 3, out_dim: int = 512, width: float = 1.0, residual: bool = False,
                 lstm_layers: int = 1, pad_last: bool = False, resnet: dict | None = None):
        super().__init__()
        self.stack = self.front = None
        if resnet is None:
            self.stack = Conv3dStack(in_channels, TABLE2_VISUAL, width, residual, pad_last)
            channels = self.stack.out_channels
        else:
            channels = resnet["widths"][-1]
            self.front = VisualFrontend(in_channels, resnet["stem_channels"], resnet["widths"], resnet["blocks"],
                                        channels, resnet["activation"])
        self.lstm = nn.LSTM(channels, out_dim // 2, lstm_layers, batch_first=True, bidirectional=True)
        self.out_dim = out_dim

    def forward(self, video: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """video (B, T, C, H, W) -> (B, T, out_dim), zeros past each length."""
        if self.stack is not None:
            x = self.stack(video).mean(dim=(3, 4))
        else:
            if mask is None:
                mask = torch.arange(video.shape[1], device=video.device)[None] < lengths.to(video.device)[:, None]
            x = self.front(video, mask, lengths)
        packed = pack_padded_sequence(x.float(), lengths.cpu(), batch_first=True, enforce_sorted=False)
        with torch.autocast(x.device.type, enabled=False):
            y, _ = self.lstm(packed)
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return y


class SpeechAudioFrontend(AudioFrontend):
    """The lip-reading audio module with Table 2's extra Conv2d 5x5 / 256 / stride 1 before the residual block."""

    def __init__(self, n_mels: int = 80, channels: list[int] | None = None, residual_blocks: int = 1,
                 out_dim: int = 512):
        super().__init__(n_mels, channels, residual_blocks, out_dim)
        layers = list(self.convs)
        c2 = layers[3].out_channels  # conv, BN, ReLU, conv (c1 -> c2), BN, ReLU, residual blocks...
        extra = [nn.Conv2d(c2, c2, 5, 1, 2, bias=False), nn.BatchNorm2d(c2), nn.ReLU()]
        self.convs = nn.Sequential(*layers[:6], *extra, *layers[6:])


@contextmanager
def running_stats_kept(module: nn.Module):
    """Batch norms inside normalise by the batch as usual but leave their running statistics as they are.

    The audio path decodes h(f_src ⊕ f_tgt), whose statistics differ from the recall path's h(f_src ⊕ v_tgt): if
    both moved the decoder's running statistics, inference (the recall path alone, eval mode) would be normalised
    by a mixture of the two (measured on GRID s1 after 4 epochs: eval-mode L1 0.73 against 0.49 in train mode on the
    same batch)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


class SpeechModel(nn.Module):
    def __init__(self, visual: SpeechVisualEncoder, decoder: TacotronDecoder | AlignedDecoder,
                 audio: SpeechAudioFrontend | None = None,
                 memory: AssociativeBridge | None = None, fusion_dropout: float = 0.0, audio_path: bool = True,
                 word_classes: int = 0):
        super().__init__()
        if (memory is None) != (audio is None):
            raise ValueError("the audio module and the memory come together (N > 0) or not at all (N = 0)")
        self.visual, self.decoder, self.audio, self.memory = visual, decoder, audio, memory
        dim = visual.out_dim
        self.fusion = None
        if memory is not None:
            self.fusion = nn.Sequential(nn.Dropout(fusion_dropout), nn.Linear(2 * dim, dim))  # h(.), one Linear
        self.audio_path = audio_path
        self.frames_per_step = decoder.r
        # training only: per-frame word classes of f_src (0 = no word); what is decoded never reads it
        self.word_head = nn.Linear(dim, word_classes) if word_classes else None

    @classmethod
    def build(cls, num_slots: int = 150, in_channels: int = 3, n_mels: int = 80, embed_dim: int = 512,
              width: float = 1.0, residual: bool = False, audio_channels: list[int] | None = None,
              scale: float = 16.0, variant: str = "paper", init_std: float = 0.5, decoder: dict | None = None,
              pad_last_conv: bool = False, visual: str = "table2", resnet: dict | None = None,
              word_classes: int = 0, fusion_dropout: float = 0.0, audio_path: bool = True) -> SpeechModel:
        """The paper's sizes by default; N = ``num_slots`` (150 speaker-dependent, 360 speaker-independent, 0 =
        baseline). ``decoder`` holds the decoder's ``type`` (tacotron, the default, or aligned) and its keyword
        overrides (:class:`TacotronDecoder`, :class:`AlignedDecoder`). ``visual``: ``table2`` (the paper's Conv3d
        stack) or ``resnet`` (the lip-reading front, sized by ``resnet``). ``word_classes`` > 0 adds the auxiliary
        per-frame word head."""
        visual = SpeechVisualEncoder(in_channels, embed_dim, width, residual, pad_last=pad_last_conv,
                                     resnet=resnet if visual == "resnet" else None)
        options = dict(decoder or {})
        kind = options.pop("type", "tacotron")
        decoders = {"tacotron": TacotronDecoder, "aligned": AlignedDecoder}
        if kind not in decoders:
            raise ValueError(f"decoder type {kind!r}: known {', '.join(decoders)}")
        dec = decoders[kind](embed_dim, n_mels, **options)
        audio = memory = None
        if num_slots > 0:
            audio = SpeechAudioFrontend(n_mels, audio_channels, 1, embed_dim)
            memory = AssociativeBridge(num_slots, embed_dim, embed_dim, scale, variant, init_std)
        return cls(visual, dec, audio, memory, fusion_dropout, audio_path, word_classes)

    @property
    def training_loss_is_inference(self) -> bool:
        """Whether the eval-mode loss is the error of what inference decodes (then validation needs no second,
        free-running pass: avtrain.tasks.speech.validation)."""
        return not self.decoder.teacher_forced

    @staticmethod
    def _lengths_mask(video: torch.Tensor, lengths: torch.Tensor | None, mask: torch.Tensor | None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t = video.shape[:2]
        if lengths is None:
            lengths = mask.sum(1) if mask is not None else torch.full((b,), t, dtype=torch.long)
        if mask is None:
            mask = torch.arange(t, device=video.device)[None] < to_device_async(lengths, video.device)[:, None]
        return lengths, mask

    def forward(self, video: torch.Tensor, mel: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> dict:
        """video (B, T, C, H, W); ``mel`` (B, M, 4T) in training: the audio module's input (N > 0) and Tacotron's
        teacher forcing (None: video only, as :meth:`infer`); host ``lengths`` (B,) and/or ``mask`` (B, T).

        Returns ``mel``/``mel_post``/``alignments`` of the recall path (f_src alone at N = 0; the only path at
        inference); with a memory ``bridge`` (its recall, addressing and L_save / L_bridge terms) and
        ``src_address``/``tgt_address`` (B, T, N), with ``mel`` also ``mel_audio``/``mel_post_audio`` of the
        real-audio path; with the word head ``word_logits`` (B, T, classes). The task turns these into losses.
        """
        lengths, mask = self._lengths_mask(video, lengths, mask)
        f_src = self.visual(video, lengths, mask)
        out: dict = {}
        if self.word_head is not None:
            out["word_logits"] = self.word_head(f_src.float())
        if self.memory is None:
            dec = self.decoder(f_src, mask, mel, lengths)
        else:
            f_tgt = self.audio(mel, mask) if mel is not None else None
            bridge = self.memory(f_src, f_tgt, mask)
            dec = self.decoder(self.fusion(torch.cat([f_src, bridge.recalled], -1)), mask, mel, lengths)
            out.update(bridge=bridge, src_address=bridge.src_address, tgt_address=bridge.tgt_address)
            if f_tgt is not None and self.audio_path:
                with running_stats_kept(self.decoder):  # the running statistics are the recall path's (inference)
                    dec_a = self.decoder(self.fusion(torch.cat([f_src, f_tgt], -1)), mask, mel, lengths)
                out.update(mel_audio=dec_a["mel"], mel_post_audio=dec_a["mel_post"])
        out.update(mel=dec["mel"], mel_post=dec["mel_post"], alignments=dec["alignments"])
        return out

    @torch.no_grad()
    def infer(self, video: torch.Tensor, lengths: torch.Tensor | None = None) -> dict:
        """Video only, free-running decoder: ``mel``, ``mel_post`` (B, M, 4T), ``alignments``, ``src_address``."""
        lengths, mask = self._lengths_mask(video, lengths, None)
        f_src = self.visual(video, lengths, mask)
        out: dict = {}
        if self.memory is not None:
            bridge = self.memory(f_src, None, mask)
            f_src = self.fusion(torch.cat([f_src, bridge.recalled], -1))
            out["src_address"] = bridge.src_address
        out.update(self.decoder(f_src, mask, None, lengths))
        return out
