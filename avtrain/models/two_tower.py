"""Two-tower speech reconstruction (Ephrat, Halperin & Peleg, "Improved speech reconstruction from silent video",
ICCV-W 2017, Sec. 4-5).

For each video frame t of a clip, a window of K = 9 frames centred on t (edge frames repeated at the clip's ends):
- pixels tower: the K gray frames stacked as K channels, the window's mean subtracted;
- flow tower: the K - 1 flow fields between consecutive frames of the window, (u, v) stacked as 2 (K - 1) channels
  in pair order [u_0, v_0, u_1, v_1, ...]; a pair that involves a repeated edge frame has zero flow;
- each tower: a stem conv then ten residual bottleneck blocks (conv1x1-BN-act-conv3x3-BN-act-conv1x1-BN-add-act),
  the paper's 128-128-128-256-256-256-256-512-512-512-512 read as the stem (128) + the ten blocks' output widths,
  LeakyReLU, dropout 0.25 after each block, then the global spatial average (5 x 4 for a 160 x 128 face);
- the two 512-d outputs concatenated (1024) -> FC 1024 (LeakyReLU) -> FC 1024 (tanh) -> FC n_mels * r (tanh),
  dropout 0.5 after each hidden FC: the ``r`` = 4 mel frames of the window's central frame t, i.e. spectrogram
  frames 4t .. 4t + 3 (centred on samples 160 * (4t .. 4t + 3), all inside frame t's 640 samples);
- the mel frames of the T consecutive windows of a chunk, concatenated (n_mels, 4T), go through the CBHG post-net
  to the linear spectrogram (n_fft / 2 + 1, 4T).
Loss (the task's, avtrain/tasks/speech/losses.py): MSE on the mel and on the linear output, equal weights (Sec. 5);
``model_conf.loss: l1`` swaps both to L1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avtrain.models.cbhg import CBHG
from avtrain.models.masked import to_device_async
from avtrain.models.sliding import sliding_window_average

TOWER_STEM = 128
TOWER_WIDTHS = (128, 128, 256, 256, 256, 256, 512, 512, 512, 512)
# 5 halvings take 160 x 128 to the paper's 5 x 4: the stem, the second block and the first, third and fifth
# blocks after a width change (the paper gives the pooled size, not the strides).
TOWER_STRIDES = (1, 2, 2, 1, 2, 1, 2, 1, 1, 1)
STEM_STRIDE = 2


class Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, ratio: int = 4, slope: float = 0.2, dropout: float = 0.25):
        super().__init__()
        mid = max(1, cout // ratio)
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.LeakyReLU(slope),
            nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid), nn.LeakyReLU(slope),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.slope, self.dropout = slope, nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(F.leaky_relu(self.body(x) + self.shortcut(x), self.slope))


class Tower(nn.Module):
    def __init__(self, in_channels: int, width: float = 1.0, ratio: int = 4, slope: float = 0.2,
                 dropout: float = 0.25, widths: tuple[int, ...] = TOWER_WIDTHS,
                 strides: tuple[int, ...] = TOWER_STRIDES):
        super().__init__()
        scaled = [max(1, int(round(w * width))) for w in (TOWER_STEM, *widths)]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, scaled[0], 3, STEM_STRIDE, 1, bias=False),
                                  nn.BatchNorm2d(scaled[0]), nn.LeakyReLU(slope))
        self.blocks = nn.Sequential(*[Bottleneck(a, b, s, ratio, slope, dropout)
                                      for a, b, s in zip(scaled[:-1], scaled[1:], strides)])
        self.out_dim = scaled[-1]

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))


def frame_windows(video: torch.Tensor, flow: torch.Tensor | None, lengths: torch.Tensor, k: int,
                  centre: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The K-frame windows of the real frames [centre start, centre stop) of each clip (all real frames when
    ``centre`` is None).

    video (B, T, H, W), flow (B, T - 1, 2, H, W), host ``lengths`` (B,) and ``centre`` (B, 2) -> pixels
    (n, K, H, W), flows (n, 2 (K - 1), H, W) and the (n, 2) (clip, frame) index of each window, n = number of
    windowed frames, in (clip, frame) order. A window reaching past a clip's loaded frames repeats its edge frame
    and has zero flow there, so the data module loads ``K // 2`` frames of context around a training window
    (``Fields.context``): then only a clip's true ends are repeated, exactly as when a whole clip is predicted.
    """
    b, t = video.shape[:2]
    device = video.device
    # the windowed frames' (clip, frame) from the host tensors (in training: no device sync)
    steps = torch.arange(t, device=lengths.device)[None]
    mask = steps < lengths[:, None]
    if centre is not None:
        centre = centre.to(lengths.device)
        mask &= (steps >= centre[:, :1]) & (steps < centre[:, 1:])
    clip, frame = (to_device_async(i, device) for i in mask.nonzero(as_tuple=True))
    lengths = to_device_async(lengths, device)
    half = k // 2
    offsets = torch.arange(-half, k - half, device=device)
    last = (lengths[clip] - 1)[:, None]
    idx = (frame[:, None] + offsets[None]).clamp(min=0)
    idx = torch.minimum(idx, last)
    pixels = video[clip[:, None], idx]  # (n, K, H, W)
    flows = None
    if flow is not None:
        pair = frame[:, None] + offsets[None, :-1]  # flow pair j joins frames (t + j, t + j + 1)
        valid = (pair >= 0) & (pair <= last - 1)
        pair = pair.clamp(0, max(flow.shape[1] - 1, 0))
        flows = flow[clip[:, None], pair] * valid[..., None, None, None].to(flow.dtype)  # (n, K-1, 2, H, W)
        flows = flows.flatten(1, 2)
    return pixels, flows, torch.stack([clip, frame], 1)


def centre_frames(spec: torch.Tensor, centre: torch.Tensor, per_frame: int) -> torch.Tensor:
    """(B, C, per_frame T) spectrogram aligned with the loaded frames -> (B, C, per_frame Tc) of each clip's
    centre window [start, stop), left-aligned, Tc the longest window; zeros past a shorter one."""
    steps = per_frame * int((centre[:, 1] - centre[:, 0]).max())  # host centre (the engine keeps it there)
    centre = to_device_async(centre, spec.device)
    idx = per_frame * centre[:, :1] + torch.arange(steps, device=spec.device)[None]  # (B, steps)
    inside = idx < per_frame * centre[:, 1:]
    idx = idx.clamp(max=spec.shape[-1] - 1)
    out = spec.gather(2, idx[:, None, :].expand(-1, spec.shape[1], -1))
    return out * inside[:, None, :].to(out.dtype)


class TwoTowerModel(nn.Module):
    def __init__(self, k: int = 9, n_mels: int = 80, n_linear: int = 321, frames_per_step: int = 4,
                 width: float = 1.0, bottleneck_ratio: int = 4, use_pixels: bool = True, use_flow: bool = True,
                 fc_dim: int = 1024, conv_dropout: float = 0.25, fc_dropout: float = 0.5, slope: float = 0.2,
                 output_activation: str = "tanh", postnet: bool = True, cbhg: dict | None = None,
                 freeze_towers: bool = False):
        super().__init__()
        if not (use_pixels or use_flow):
            raise ValueError("need at least one tower")
        if output_activation not in ("tanh", "sigmoid", "none"):
            raise ValueError(f"output_activation must be tanh, sigmoid or none, got {output_activation!r}")
        self.k, self.n_mels, self.r = k, n_mels, frames_per_step
        self.pixels = Tower(k, width, bottleneck_ratio, slope, conv_dropout) if use_pixels else None
        self.flow = Tower(2 * (k - 1), width, bottleneck_ratio, slope, conv_dropout) if use_flow else None
        latent = sum(t.out_dim for t in (self.pixels, self.flow) if t is not None)
        self.decoder = nn.Sequential(
            nn.Linear(latent, fc_dim), nn.BatchNorm1d(fc_dim), nn.LeakyReLU(slope), nn.Dropout(fc_dropout),
            nn.Linear(fc_dim, fc_dim), nn.BatchNorm1d(fc_dim), nn.Tanh(), nn.Dropout(fc_dropout),
            nn.Linear(fc_dim, n_mels * frames_per_step),
        )
        self.output_activation = output_activation
        self.postnet = CBHG(n_mels, n_linear, **(cbhg or {})) if postnet else None
        if freeze_towers:
            self.freeze_encoder()

    def freeze_encoder(self) -> None:
        """The paper trains end to end but keeps the CNN's conv layers frozen while the post-net trains; call this
        (after a first stage) for that second stage. The towers' BN statistics freeze with them."""
        self.encoder_frozen = True
        for tower in (self.pixels, self.flow):
            if tower is not None:
                tower.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> TwoTowerModel:
        super().train(mode)
        if getattr(self, "encoder_frozen", False):
            for tower in (self.pixels, self.flow):
                if tower is not None:
                    tower.eval()
        return self

    def _activate(self, x: torch.Tensor) -> torch.Tensor:
        if self.output_activation == "tanh":
            return torch.tanh(x)
        return torch.sigmoid(x) if self.output_activation == "sigmoid" else x

    def frame_mel(self, video: torch.Tensor, flow: torch.Tensor | None, lengths: torch.Tensor,
                  centre: torch.Tensor | None = None) -> torch.Tensor:
        """video (B, T, [1,] H, W), flow (B, T - 1, 2, H, W) -> mel (B, n_mels, r T), zeros past each length; with
        host ``centre`` (B, 2) only the centre windows' frames, (B, n_mels, r Tc), each clip's from column 0."""
        if video.dim() == 5:
            video = video[:, :, 0]
        b, t = video.shape[:2]
        pixels, flows, where = frame_windows(video, flow if self.flow is not None else None, lengths, self.k,
                                             centre)
        if centre is not None:
            first = to_device_async(centre[:, 0], where.device)
            where = torch.stack([where[:, 0], where[:, 1] - first[where[:, 0]]], 1)
            t = int((centre[:, 1] - centre[:, 0]).max())
        feats = []
        if self.pixels is not None:
            pixels = pixels - pixels.mean(dim=(1, 2, 3), keepdim=True)  # "from which we subtract the mean"
            feats.append(self.pixels(pixels))
        if self.flow is not None:
            feats.append(self.flow(flows))
        frames = self._activate(self.decoder(torch.cat(feats, 1))).view(-1, self.r, self.n_mels)
        out = frames.new_zeros(b, t, self.r, self.n_mels)
        out[where[:, 0], where[:, 1]] = frames
        return out.flatten(1, 2).transpose(1, 2)

    def forward(self, video: torch.Tensor, flow: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
                centre: torch.Tensor | None = None) -> dict:
        """video (B, T, 1, H, W) gray, flow (B, T - 1, 2, H, W), host ``lengths`` (B,) and ``centre`` (B, 2): the
        frames [start, stop) whose spectrogram is predicted, the others being the windows' context. Returns
        ``mel`` (B, n_mels, r T) and with the post-net ``linear`` (B, bins, r T): the centre frames' only, with
        ``centre``, each clip's from column 0."""
        b, t = video.shape[:2]
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long)
        mel = self.frame_mel(video, flow, lengths, centre)
        out = {"mel": mel}
        if self.postnet is not None:
            frames = (centre[:, 1] - centre[:, 0]) if centre is not None else lengths
            # the post-net sees the window only, as each of its sliding windows at inference sees window frames
            out["linear"] = self.postnet(mel, frames * self.r)
        return out

    @torch.no_grad()
    def predict_clip(self, video: torch.Tensor, flow: torch.Tensor | None, window: int = 16,
                     sigma: float | None = None) -> dict[str, torch.Tensor]:
        """One whole clip, video (T, [1,] H, W), flow (T - 1, 2, H, W) -> ``mel`` (n_mels, 4T) and ``linear``
        (bins, 4T): the post-net runs on every ``window``-frame chunk (hop 1) and overlaps are Gaussian-averaged.
        The mel needs no averaging: each frame's mel comes from its own K-window whatever the chunk."""
        t = video.shape[0]
        mel = self.frame_mel(video[None], None if flow is None else flow[None], torch.tensor([t]))
        out = {"mel": mel[0]}
        if self.postnet is not None:
            r = self.r
            out["linear"] = sliding_window_average(
                lambda s, e: self.postnet(mel[:, :, r * s : r * e])[0], t, window, r, 1, sigma)
        return out
