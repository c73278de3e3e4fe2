"""Named, typed preprocessing presets: crop sizes and colour, registration mode, flow, spectrogram parameters.

A preset's hash (of its canonical JSON, without the description: rewording it changes no sample) is recorded in
every sample, so two shard sets made with different parameters can never be mixed up silently.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from avbridge.spectra import SpectrogramParams


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CropSpec(_Strict):
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    color: Literal["gray", "rgb"]
    # Side of the square (mouth) or height of the box (face) in canonical pixels (mean-face mode: the mean face's
    # outer eye corners are ``eye_distance`` apart) that is resized to height x width.
    box: float = Field(gt=0)


class FlowSpec(_Strict):
    method: Literal["dis", "farneback"] = "farneback"
    # DIS preset names as in OpenCV; Farneback parameters as cv2.calcOpticalFlowFarneback takes them.
    dis_preset: Literal["ultrafast", "fast", "medium"] = "medium"
    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2
    # Flow is stored as int8 * scale pixels/frame, clipped to +-127 * scale.
    scale: float = 0.125


# Registration modes that need face landmarks; the others run no detector at all.
LANDMARK_MODES = ("mean-face", "per-clip")


class RegistrationSpec(_Strict):
    # "mean-face": every frame's stable points fitted to a mean face computed from the data (or given);
    # "per-clip": the two-tower paper's mode, every frame fitted to the clip's central frame by the eye points;
    # "fixed-box": no landmarks, the same source-pixel box in every frame (the official bridging LRW loader);
    # "none": no landmarks, the whole frame (pre-cropped corpora such as LRW-1000).
    mode: Literal["mean-face", "per-clip", "fixed-box", "none"] = "mean-face"
    # Centred moving average over this many frames, applied to the landmarks before the similarity fit.
    smooth_frames: int = Field(default=5, ge=1)
    eye_distance: float = Field(default=80.0, gt=0)  # canonical pixels between the outer eye corners
    # fixed-box: (top, bottom, left, right) source rows and columns, end-exclusive.
    box: tuple[int, int, int, int] | None = None

    @model_validator(mode="after")
    def _check_box(self) -> RegistrationSpec:
        if (self.mode == "fixed-box") != (self.box is not None):
            raise ValueError("registration mode fixed-box needs a box (top, bottom, left, right); "
                             "other modes take none")
        if self.box is not None and not (0 <= self.box[0] < self.box[1] and 0 <= self.box[2] < self.box[3]):
            raise ValueError(f"box {self.box} is not (top, bottom, left, right) with top < bottom, left < right")
        return self

    @model_serializer(mode="wrap")
    def _omit_unset_box(self, handler):
        # Presets made before fixed-box existed must keep their hashes: an unset box is left out of the JSON.
        data = handler(self)
        if data.get("box") is None:
            data.pop("box", None)
        return data


class Preset(_Strict):
    name: str
    description: str
    fps: float = 25.0
    sample_rate: int = 16000
    registration: RegistrationSpec = RegistrationSpec()
    mouth: CropSpec | None = None
    face: CropSpec | None = None
    flow: FlowSpec | None = None
    mel: SpectrogramParams | None = None
    linear: bool = False  # also store the linear-magnitude spectrogram (same STFT as mel)
    store_wave: bool = True
    # Spectrograms as float16 .npy, or as 8 bits over the normalisation's value range (max error 1/510 of it:
    # 0.026 nats for "log"), deflated: ~2.3x smaller.
    feature_dtype: Literal["float16", "uint8"] = "float16"
    # "mp4": H.264 crops (smallest); "jpg": one JPEG per crop clip, ~2.5x faster to decode than mp4 for ~4.5x the
    # bytes; "npy": raw uint8 (largest, fastest to decode). Measured per loader worker: docs/benchmarks.md.
    crop_codec: Literal["mp4", "jpg", "npy"] = "mp4"
    # x264 settings of mp4 crops: CRF 18 is visually lossless on these crops; "veryfast" gives files ~40% smaller
    # than "superfast" for ~1.7x the encode time (measured on s1 mouth crops, docs/benchmarks.md).
    video_crf: int = Field(default=18, ge=0, le=51)
    video_speed: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = "veryfast"
    landmarks: Literal["subset", "full", "none"] = "subset"
    min_valid_fraction: float = Field(default=0.5, gt=0, le=1)  # frames with a face, else the clip is rejected
    samples_per_frame_range: tuple[int, int] = (560, 720)

    @model_validator(mode="after")
    def _check(self) -> Preset:
        if self.mel is not None:
            self.mel.validate()
            if self.mel.sample_rate != self.sample_rate:
                raise ValueError(f"mel sample_rate {self.mel.sample_rate} != preset sample_rate {self.sample_rate}")
            spf = self.samples_per_frame
            if spf % self.mel.hop_length:
                raise ValueError(f"hop {self.mel.hop_length} does not divide {spf} samples per frame")
        if self.flow is not None and self.face is None:
            raise ValueError("flow is computed on the face crop: a preset with flow needs a face crop")
        if self.linear and self.mel is None:
            raise ValueError("linear spectrogram needs mel STFT parameters")
        if self.registration.mode not in LANDMARK_MODES and self.landmarks != "none":
            raise ValueError(f"registration mode {self.registration.mode} runs no detector: landmarks must be 'none'")
        return self

    @property
    def samples_per_frame(self) -> int:
        spf = self.sample_rate / self.fps  # 14985 / 29.97 = 500.00000000000006 in floats: hence the tolerance
        if abs(spf - round(spf)) > 1e-6:
            raise ValueError(f"{self.sample_rate} Hz / {self.fps} fps is not a whole number of samples per frame")
        return int(round(spf))

    @property
    def spectrogram_frames_per_video_frame(self) -> int:
        return self.samples_per_frame // self.mel.hop_length if self.mel else 0

    def to_dict(self) -> dict:
        return json.loads(self.model_dump_json())

    @property
    def hash(self) -> str:
        """12 hex digits of the SHA-256 of the canonical JSON of every parameter; the description is text for
        people and is left out (avprep before 0.3 hashed it too: a resume accepts a folder whose recorded hash
        differs only by it)."""
        params = {k: v for k, v in self.to_dict().items() if k != "description"}
        canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            name="bridging-grid",
            description="Associative bridging (Kim et al., ICCV 2021), GRID: 96x96 RGB face for speech "
            "reconstruction, 112x112 gray mouth for lip reading (its LRW setting); mel window 800, hop 160, 80 mels.",
            mouth=CropSpec(height=112, width=112, color="gray", box=72.0),
            face=CropSpec(height=96, width=96, color="rgb", box=176.0),
            mel=SpectrogramParams(n_fft=800, win_length=800, hop_length=160, n_mels=80, fmin=0, fmax=8000),
        ),
        Preset(
            name="two-tower",
            description="Two-tower pixels + optical flow (Ephrat et al., 2017): 160x128 (HxW) gray face registered "
            "per clip to its central frame by the eyes, Farneback flow, 40 ms / 10 ms windows, mel + linear, "
            "Tacotron-style peak normalisation to [0, 1].",
            registration=RegistrationSpec(mode="per-clip"),
            face=CropSpec(height=160, width=128, color="gray", box=200.0),
            flow=FlowSpec(method="farneback"),
            mel=SpectrogramParams(
                n_fft=640, win_length=640, hop_length=160, n_mels=80, fmin=0, fmax=8000,
                normalisation="tacotron", preemphasis=0.97,
            ),
            linear=True,
        ),
        Preset(
            name="vca-grid",
            description="VCA-GAN-style GRID speech reconstruction: 112x112 gray face aligned per clip to a reference "
            "frame; mel n_fft 640 / hop 160 / win 640, 80 mels, 55-7500 Hz, 55 Hz high-pass, pre-emphasis 0.97, "
            "log(clamp 1e-5) scaled to [-1, 1].",
            registration=RegistrationSpec(mode="per-clip"),
            face=CropSpec(height=112, width=112, color="gray", box=176.0),
            mel=SpectrogramParams(
                n_fft=640, win_length=640, hop_length=160, n_mels=80, fmin=55, fmax=7500,
                normalisation="log-minmax", log_max=2.0, preemphasis=0.97, highpass_hz=55,
            ),
        ),
        Preset(
            name="bridging-lrw",
            description="Associative bridging (Kim et al., ICCV 2021), LRW lip reading as its official loader does it: "
            "fixed box rows 59-195, columns 95-231 (136x136) resized to 112x112 gray, no detector; mel window 400, "
            "hop 160, 80 mels.",
            registration=RegistrationSpec(mode="fixed-box", box=(59, 195, 95, 231)),
            mouth=CropSpec(height=112, width=112, color="gray", box=136.0),
            mel=SpectrogramParams(n_fft=400, win_length=400, hop_length=160, n_mels=80, fmin=0, fmax=8000),
            landmarks="none",
        ),
        Preset(
            name="bridging-lrw-registered",
            description="Associative bridging, LRW, with the canonical lip-reading recipe's registration: stable "
            "points fitted to a mean face, landmarks averaged over a centred 13-frame (+-6) window, 96x96 gray mouth; "
            "mel window 400, hop 160, 80 mels.",
            registration=RegistrationSpec(mode="mean-face", smooth_frames=13),
            mouth=CropSpec(height=96, width=96, color="gray", box=72.0),
            mel=SpectrogramParams(n_fft=400, win_length=400, hop_length=160, n_mels=80, fmin=0, fmax=8000),
        ),
        Preset(
            name="bridging-lrw1000",
            description="Associative bridging, LRW-1000: the corpus's pre-cropped lip images resized to 112x112 gray "
            "(no detector), the video span matched to the audio (which runs 0.4 s past the word); mel window 400, "
            "hop 160, 80 mels.",
            registration=RegistrationSpec(mode="none"),
            mouth=CropSpec(height=112, width=112, color="gray", box=112.0),
            mel=SpectrogramParams(n_fft=400, win_length=400, hop_length=160, n_mels=80, fmin=0, fmax=8000),
            landmarks="none",
        ),
        Preset(
            name="two-tower-tcd-timit",
            description="Two-tower pixels + optical flow (Ephrat et al., 2017), TCD-TIMIT at 29.97 fps kept as is: "
            "14985 Hz audio (500 samples per frame), window 500 / hop 125 samples (33.4 ms / 8.34 ms, 4 spectrogram "
            "frames per video frame), mel + linear, Tacotron-style peak normalisation; 160x128 gray face + flow.",
            fps=29.97,
            sample_rate=14985,
            registration=RegistrationSpec(mode="per-clip"),
            face=CropSpec(height=160, width=128, color="gray", box=200.0),
            flow=FlowSpec(method="farneback"),
            mel=SpectrogramParams(
                sample_rate=14985, n_fft=500, win_length=500, hop_length=125, n_mels=80, fmin=0, fmax=7492.5,
                normalisation="tacotron", preemphasis=0.97,
            ),
            linear=True,
            # The 560-720 band of 640 at 25 fps (-12.5% / +12.5%), scaled to 500 samples per frame.
            samples_per_frame_range=(437, 563),
        ),
    ]
}


def with_overrides(preset: Preset, **changes) -> Preset:
    """A validated copy of ``preset`` with top-level fields changed (None = keep); the hash follows the change."""
    changes = {k: v for k, v in changes.items() if v is not None}
    return Preset.model_validate({**preset.to_dict(), **changes}) if changes else preset


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}") from None
