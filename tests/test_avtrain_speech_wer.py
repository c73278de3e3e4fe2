"""The offline recogniser behind the speech WER (PocketSphinx + GRID's grammar) on real GRID s1 clips: it must hear
true speech (nearly) right and score time-reversed, shuffled-in-time and silent audio badly, keep its log off the
terminal, and feed `wer` / `wer_cmudict` into the speech metrics."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from avtrain.tasks.speech.recognise import GRAMMAR, Recogniser, grid_pronunciations, is_grid_sentence, jsgf
from avtrain.tasks.text import edit_distance as word_errors

pytestmark = pytest.mark.skipif(importlib.util.find_spec("pocketsphinx") is None,
                                reason="pocketsphinx not installed (pip install -e .[metrics])")

CLIPS = ("bbaf2n", "bbaf3s", "bbaf4p")  # s1 clips: bin blue at f two now / ... three soon / ... four please


def _audio(path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
        chunks = []
        for frame in container.decode(container.streams.audio[0]):
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
        chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32)


def _transcript(path) -> str:
    """The words of a GRID .align file (silence and short pauses left out)."""
    words = [line.split()[2] for line in path.read_text().splitlines() if line.strip()]
    return " ".join(w for w in words if w not in ("sil", "sp"))


@pytest.fixture(scope="module")
def utterances(grid_root) -> list[tuple[np.ndarray, str]]:
    s1 = grid_root / "s1"
    return [(_audio(s1 / "video" / f"{name}.mkv"), _transcript(s1 / "align" / f"{name}.align")) for name in CLIPS]


@pytest.fixture(scope="module")
def recogniser() -> Recogniser:
    return Recogniser("grid")


def _wer(recogniser: Recogniser, pairs) -> float:
    counts = [recogniser.errors(wave, text)[:2] for wave, text in pairs]
    return sum(e for e, _ in counts) / sum(n for _, n in counts)


def test_word_errors_is_the_edit_distance():
    assert word_errors("bin blue at f two now".split(), "bin blue at f two now".split()) == 0
    assert word_errors("bin blue at f two now".split(), "bin red at f two now".split()) == 1  # substitution
    assert word_errors("bin blue at f two now".split(), "bin at f two now".split()) == 1  # deletion
    assert word_errors("bin blue at f two now".split(), "bin blue blue at f two now".split()) == 1  # insertion
    assert word_errors("bin blue at f two now".split(), []) == 6
    assert word_errors("a b c".split(), "b c a".split()) == 2  # not a positional comparison (that would say 3)


def test_grammar_and_grid_dictionary():
    assert is_grid_sentence("bin blue at f two now") and is_grid_sentence("Set Green By Z Nine Soon")
    assert not is_grid_sentence("bin blue at w two now")  # GRID has no w
    assert not is_grid_sentence("blue bin at f two now") and not is_grid_sentence("bin blue at f two")
    assert "<letter> = a | b" in jsgf() and jsgf().count("public") == 1
    from pathlib import Path

    from pocketsphinx import get_model_path

    prons = grid_pronunciations(Path(get_model_path()) / "en-us" / "cmudict-en-us.dict")
    assert set(prons) == {w for words in GRAMMAR.values() for w in words}
    assert "Z EH D" in prons["z"] and prons["a"] == ["EY"]


def test_true_grid_speech_is_heard_and_garbage_is_not(utterances, recogniser):
    """Measured (pocketsphinx 5.1.1, GRID dictionary): WER 0 on these three clips; time-reversed 0.67-0.83 each,
    20 ms chunks shuffled 1.0 (no path through the grammar), silence 1.0."""
    assert _wer(recogniser, utterances) <= 1 / 6
    reversed_ = [(wave[::-1].copy(), text) for wave, text in utterances]
    assert _wer(recogniser, reversed_) >= 0.5
    rng = np.random.default_rng(0)
    shuffled = []
    for wave, text in utterances:
        chunks = wave[: len(wave) // 320 * 320].reshape(-1, 320)
        shuffled.append((chunks[rng.permutation(len(chunks))].reshape(-1), text))
    assert _wer(recogniser, shuffled) >= 0.5
    silent = [(np.zeros_like(wave), text) for wave, text in utterances]
    assert _wer(recogniser, silent) == 1.0
    # another rate is resampled to the model's 16 kHz first
    from avtrain.tasks.speech.metrics import resample

    wave, text = utterances[0]
    assert recogniser.errors(resample(wave, 16000, 22050), text, 22050)[0] <= 1


def test_the_recogniser_log_stays_off_the_terminal(capfd, utterances):
    """Silence has no path through the grammar: without logfn, pocketsphinx writes 'ERROR: "fsg_search.c" ... Final
    result does not match the grammar' to the process's stderr (measured), which capfd sees."""
    capfd.readouterr()
    r = Recogniser("default")
    assert r.words(np.zeros(16000, np.float32)) == []
    r.words(utterances[0][0])
    out, err = capfd.readouterr()  # file-descriptor level: pocketsphinx's C logging would land here
    assert out == "" and err == ""


def test_speech_metrics_add_word_error_rates(utterances):
    from avtrain.tasks.speech.metrics import SpeechMetrics
    from avtrain.tasks.speech.recognise import recognisers

    asr = recognisers()
    assert set(asr) == {"wer", "wer_cmudict"} and asr["wer"].dictionary == "grid"
    m = SpeechMetrics(recognisers=asr)
    wave, text = utterances[0]
    m.add("true", wave, wave, 16000, text=text)
    m.add("reversed", wave, wave[::-1].copy(), 16000, text=text)
    m.add("no text", wave, wave, 16000)
    m.add("not grid", wave, wave, 16000, text="the quick brown fox")
    s = m.summary()
    assert s["wer"]["count"] == 2 and s["wer"]["failed"] == 2
    assert set(s["wer"]["failures"]) == {"no transcript", "transcript outside the GRID grammar"}
    assert s["wer"]["mean"] == pytest.approx((m.per_clip["true"]["wer"] + m.per_clip["reversed"]["wer"]) / 2)
    assert m.per_clip["true"]["wer"] == 0 and m.per_clip["reversed"]["wer"] >= 0.5
    assert m.transcripts["true"] == {"text": text, "heard_wer": text, "heard_wer_cmudict": text}
    assert s["stoi"]["count"] == 4  # the signal metrics are unchanged
    audio_only = SpeechMetrics(recognisers=asr, signal_metrics=False)
    audio_only.add("true", None, wave, 16000, text=text)
    assert set(audio_only.summary()) == {"wer", "wer_cmudict"}
