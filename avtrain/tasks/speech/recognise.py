"""Word error rate of (reconstructed) GRID speech by an offline recogniser: PocketSphinx's bundled US-English
acoustic model, constrained by GRID's sentence grammar (command colour preposition letter digit adverb).

Two pronunciation dictionaries:

``grid``     the grammar's 51 words with the bundled cmudict's pronunciations, plus "zed" (Z EH D) for the letter z
             (GRID's British speakers say zed) and only EY for the letter a (cmudict's AH is the article); the
             better on true GRID audio, so the one ``avtrain eval`` prints as ``wer``
``default``  the bundled cmudict as shipped (``wer_cmudict``)

The recogniser needs no network and no training; pocketsphinx is optional (the ``metrics`` extra) and imported on
first use. Its log goes to /dev/null, never to the terminal.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np

from avtrain.tasks.text import edit_distance

GRAMMAR: dict[str, tuple[str, ...]] = {
    "command": ("bin", "lay", "place", "set"),
    "colour": ("blue", "green", "red", "white"),
    "preposition": ("at", "by", "in", "with"),
    "letter": tuple("abcdefghijklmnopqrstuvxyz"),  # GRID leaves out w, the only letter of more than one syllable
    "digit": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "adverb": ("again", "now", "please", "soon"),
}
DICTIONARIES = ("grid", "default")
RATE = 16000  # the bundled acoustic model's rate
# metric name -> (dictionary, label); "wer" is the one tables print
WER_METRICS: dict[str, tuple[str, str]] = {
    "wer": ("grid", "word error rate: PocketSphinx en-us, GRID grammar, GRID dictionary (cmudict + zed, a = EY)"),
    "wer_cmudict": ("default", "word error rate: PocketSphinx en-us, GRID grammar, its bundled cmudict"),
}


def jsgf() -> str:
    """GRID's sentence grammar in JSGF: exactly one word of each slot, in order."""
    rules = "".join(f"<{slot}> = {' | '.join(words)};\n" for slot, words in GRAMMAR.items())
    sentence = " ".join(f"<{slot}>" for slot in GRAMMAR)
    return f"#JSGF V1.0;\ngrammar grid;\npublic <sentence> = {sentence};\n{rules}"


def is_grid_sentence(text: str) -> bool:
    words = text.lower().split()
    return len(words) == len(GRAMMAR) and all(w in choices for w, choices in zip(words, GRAMMAR.values()))


def grid_pronunciations(cmudict: Path) -> dict[str, list[str]]:
    """The grammar's words with their cmudict pronunciations, z + "zed", a = EY only."""
    vocabulary = {w for words in GRAMMAR.values() for w in words}
    prons: dict[str, list[str]] = {}
    with cmudict.open() as f:
        for line in f:
            word, *phones = line.split()
            base = word.split("(")[0]
            if base in vocabulary:
                prons.setdefault(base, []).append(" ".join(phones))
    missing = vocabulary - set(prons)
    if missing:
        raise ValueError(f"{cmudict} lacks GRID words {sorted(missing)}")
    prons["z"].append("Z EH D")
    prons["a"] = ["EY"]
    return prons


def recognisers() -> dict[str, Recogniser]:
    """One recogniser per WER metric (``WER_METRICS``); empty when pocketsphinx is not installed."""
    if importlib.util.find_spec("pocketsphinx") is None:
        return {}
    return {name: Recogniser(dictionary) for name, (dictionary, _) in WER_METRICS.items()}


class Recogniser:
    """Waveform -> GRID sentence (a list of words; empty when the decoder finds no path through the grammar)."""

    def __init__(self, dictionary: str = "grid"):
        if dictionary not in DICTIONARIES:
            raise ValueError(f"dictionary must be one of {', '.join(DICTIONARIES)}, got {dictionary!r}")
        from pocketsphinx import Decoder, get_model_path

        model = Path(get_model_path()) / "en-us"
        cmudict = model / "cmudict-en-us.dict"
        self.dictionary = dictionary
        with tempfile.TemporaryDirectory() as tmp:
            grammar = Path(tmp) / "grid.gram"
            grammar.write_text(jsgf())
            words = cmudict
            if dictionary == "grid":
                words = Path(tmp) / "grid.dict"
                words.write_text("".join(f"{w if i == 0 else f'{w}({i + 1})'} {p}\n"
                                         for w, prons in grid_pronunciations(cmudict).items()
                                         for i, p in enumerate(prons)))
            # the decoder reads both files while it is built; logfn keeps its INFO lines off the terminal
            self.decoder = Decoder(hmm=str(model / "en-us"), dict=str(words), jsgf=str(grammar), samprate=RATE,
                                   logfn=os.devnull)

    def words(self, wave: np.ndarray, sample_rate: int = RATE) -> list[str]:
        from avtrain.tasks.speech.metrics import resample

        x = resample(np.asarray(wave, np.float64).reshape(-1), sample_rate, RATE)
        peak = float(np.abs(x).max()) if len(x) else 0.0
        if peak > 1.0:  # a prediction louder than full scale: scale it down rather than wrap around in int16
            x = x / peak
        # x 32768 undoes soundfile's int16 -> float scaling exactly: the recogniser hears the file's own samples
        pcm = np.clip(np.round(x * 32768), -32768, 32767).astype("<i2")
        self.decoder.start_utt()
        self.decoder.process_raw(pcm.tobytes(), full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr.split() if hyp is not None and hyp.hypstr else []

    def errors(self, wave: np.ndarray, text: str, sample_rate: int = RATE) -> tuple[int, int, list[str]]:
        """(word errors, reference words, recognised words) of one clip against its transcript ``text``."""
        reference = text.lower().split()
        hypothesis = self.words(wave, sample_rate)
        return edit_distance(reference, hypothesis), len(reference), hypothesis
