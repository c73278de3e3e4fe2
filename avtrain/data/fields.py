"""What a task asks the data module for, beyond the video crops, the mel and the clip's metadata (always read)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fields:
    """What a task reads beyond the video crops, the mel and the clip's metadata (always read)."""

    flow: bool = False  # optical flow between consecutive frames, batch["flow"] (B, T - 1, 2, H, W)
    linear: bool = False  # linear spectrogram, batch["linear"] (B, bins, 4T)
    # frames of context loaded on each side of a ``data.max_frames`` training/validation window (as far as the clip
    # has them): the model sees them as input but computes its loss on the window only, batch["centre"] (B, 2) =
    # each clip's [start, stop) of the window in the loaded frames. 0: no context, no "centre".
    context: int = 0
    # per-video-frame word classes from the samples' word alignments, batch["word_frames"] (B, T): 0 = no word,
    # 1 + index in this vocabulary, -100 on padding. Empty: not read.
    word_vocabulary: tuple[str, ...] = ()
    # word-boundary indicator of word clips stored with context (``avprep grid --word-context``), batch["boundary"]
    # (B, T): 1.0 on the word's own frames (the JSON's ``word_span``; the whole clip when it has none), 0.0 on
    # context and padding
    boundary: bool = False
