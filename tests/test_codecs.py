"""Crop codecs: JPEG filmstrips (lossy, PSNR-bounded) and raw npy (exact) round-trip, avprep writes each codec, and
avtrain's loader reads them into the same batches as H.264 crops within the codec's error."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from avbridge import codecs
from avbridge.sample import decode_field, decode_sample, encode_field
from avprep.presets import get_preset
from avtrain.config import validate_recipe
from avtrain.data import build_loader
from avtrain.synthetic import _TINT, make_clip, write_shards


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


@pytest.fixture(scope="module")
def lrw_clip() -> np.ndarray:
    """An LRW-shaped clip (29 x 112 x 112): a moving bar on sigma-8 pixel noise, harder to compress than lips."""
    return make_clip(3, 29, 112, 80, np.random.default_rng(0))[0]


def test_jpeg_gray_round_trip_keeps_shape_and_is_within_psnr_bound(lrw_clip):
    data = codecs.encode_jpeg_frames(lrw_clip)
    back = codecs.decode_jpeg_frames(data)
    assert back.shape == lrw_clip.shape and back.dtype == np.uint8 and back.flags.writeable
    assert codecs.encode_jpeg_frames(lrw_clip) == data  # byte-reproducible, unlike x264 (docs/format.md)
    # measured 36.6 dB at quality 90 (H.264 at CRF 18: 35.9 dB on the same clip); noise-free content is ~50 dB
    assert psnr(lrw_clip, back) > 34.0
    assert len(data) < lrw_clip.nbytes / 2.5
    # higher quality is closer: the quality setting reaches the encoder
    assert psnr(lrw_clip, codecs.decode_jpeg_frames(codecs.encode_jpeg_frames(lrw_clip, quality=98))) > \
        psnr(lrw_clip, back) + 3


def test_jpeg_rgb_round_trip_keeps_colour_layout(lrw_clip):
    rgb = np.clip(lrw_clip[:, :96, :96, None] * _TINT, 0, 255).astype(np.uint8)
    back = codecs.decode_jpeg_frames(codecs.encode_jpeg_frames(rgb))
    assert back.shape == rgb.shape
    assert psnr(rgb, back) > 33.0  # measured 36.2 dB (4:2:0 chroma, like the H.264 crops)
    # channel order survives: the tint makes R > G > B on the bar
    bright = rgb[..., 0] > 150
    means = back[bright].reshape(-1, 3).mean(0)
    assert means[0] > means[1] > means[2]


def test_jpeg_frames_do_not_bleed_into_each_other():
    """Frames are stacked in one image: a black frame between white ones must stay black (block-aligned heights)."""
    frames = np.full((3, 88, 88), 255, np.uint8)
    frames[1] = 0
    back = codecs.decode_jpeg_frames(codecs.encode_jpeg_frames(frames))
    assert back[1].max() < 8 and back[0].min() > 247 and back[2].min() > 247


def test_jpeg_long_clips_go_into_columns():
    """Past JPEG's 65535-pixel side (here 601 frames x 112 rows = 24 s), frames are laid out in columns."""
    rng = np.random.default_rng(1)
    frames = np.repeat(rng.integers(0, 256, (601, 1, 1), dtype=np.uint8), 112, 1).repeat(96, 2)  # flat frames
    frames[:, 40:60, 30:50] = 255 - frames[:, :1, :1]  # a contrasting square: position and order both matter
    data = codecs.encode_jpeg_frames(frames)
    assert b"avbridge-frames=601,2" in data[:40]
    back = codecs.decode_jpeg_frames(data)
    assert back.shape == frames.shape and psnr(frames, back) > 40
    assert np.abs(back.astype(int) - frames).reshape(601, -1).mean(1).max() < 3  # every frame where it belongs
    rgb = np.stack([frames[:300]] * 3, -1)
    assert codecs.decode_jpeg_frames(codecs.encode_jpeg_frames(rgb)).shape == rgb.shape


def test_jpeg_field_errors_are_clear():
    with pytest.raises(ValueError, match="uint8"):
        codecs.encode_jpeg_frames(np.zeros((2, 8, 8), np.float32))
    with pytest.raises(ValueError, match="65535"):
        codecs.encode_jpeg_frames(np.zeros((1, 8, 70000), np.uint8))
    from PIL import Image

    plain = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(plain, "JPEG")
    with pytest.raises(ValueError, match="frame-count comment"):
        codecs.decode_jpeg_frames(plain.getvalue())


def test_npy_crops_round_trip_exactly(lrw_clip):
    for name in ("mouth.npy", "face.npy"):
        np.testing.assert_array_equal(decode_field(name, encode_field(name, lrw_clip)), lrw_clip)


def test_decode_sample_names_every_crop_codec_by_its_bare_field(lrw_clip):
    for codec in ("mp4", "jpg", "npy"):
        raw = {"__key__": "k", f"mouth.{codec}": encode_field(f"mouth.{codec}", lrw_clip),
               "json": json.dumps({"num_frames": len(lrw_clip)}).encode()}  # the JSON says how long fields are
        out = decode_sample(raw, fields=("mouth", "json"))
        assert set(out) == {"__key__", "mouth", "json"} and out["mouth"].shape == lrw_clip.shape


def _batches(shards, workers: int = 0) -> list[dict]:
    recipe = validate_recipe({"output_dir": "unused", "seed": 3, "augment": "none",
                              "data": {"shards": str(shards), "batch_size": 4, "shuffle_buffer": 1,
                                       "num_workers": workers}})
    return list(build_loader(recipe, "train", train=True))


def test_avtrain_loader_reads_jpg_and_npy_crops_like_mp4(tmp_path):
    """The same synthetic clips stored with each codec give the same batches: exactly between npy and the source,
    and within each lossy codec's error for jpg and mp4."""
    sets = {c: write_shards(tmp_path / c, splits={"train": (2, 4)}, size=48, codec=c, seed=7)
            for c in ("mp4", "jpg", "npy")}
    batches = {c: _batches(s) for c, s in sets.items()}
    source = _batches(sets["npy"], workers=1)  # through a worker process too
    for c, got in batches.items():
        assert [b["keys"] for b in got] == [b["keys"] for b in batches["npy"]]
        for b, ref in zip(got, batches["npy"]):
            assert b["video"].shape == ref["video"].shape
            err = (b["video"] - ref["video"]).abs().mean().item()
            assert err < (1e-6 if c == "npy" else 0.15), (c, err)  # normalised units: std 0.165 of [0, 1]
    for b, ref in zip(source, batches["npy"]):
        assert (b["video"] == ref["video"]).all()


@pytest.mark.slow
def test_avprep_writes_jpg_and_npy_crops_of_a_real_clip(grid_root, tmp_path):
    """A real GRID clip through the real detector, once per crop codec chosen on avprep's command line: the jpg
    crops are the npy (uncompressed) crops within the PSNR bound, and avprep's inspect checks them."""
    from typer.testing import CliRunner

    from avprep.cli import app
    from avprep.inspect import check_shards
    from avprep.shards import iter_raw_samples, shard_paths

    crops = {}
    for codec in ("npy", "jpg"):
        out = tmp_path / codec
        result = CliRunner().invoke(app, ["grid", "--root", str(grid_root), "--speakers", "s1", "--limit", "1",
                                          "--split-scheme", "none", "--crop-codec", codec, "--out", str(out),
                                          "--no-progress"])
        assert result.exit_code == 0, result.output
        (raw,) = [r for p in shard_paths(out) for r in iter_raw_samples(p)]
        assert {f"mouth.{codec}", f"face.{codec}"} <= set(raw) and not {"mouth.mp4", "face.mp4"} & set(raw)
        assert json.loads(raw["json"])["preset_hash"] != get_preset("bridging-grid").hash  # the choice is recorded
        crops[codec] = decode_sample(raw)
        assert not check_shards(out).errors
    for name, bound in (("mouth", 45.0), ("face", 34.0)):  # measured 50.7 (12 clips) and 36.9 dB
        ref, got = crops["npy"][name], crops["jpg"][name]
        assert got.shape == ref.shape and psnr(ref, got) > bound, (name, psnr(ref, got))


def test_avprep_refuses_an_unknown_crop_codec(tmp_path):
    from typer.testing import CliRunner

    from avprep.cli import app

    result = CliRunner().invoke(app, ["grid", "--root", str(tmp_path), "--crop-codec", "gif", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2 and "crop_codec" in result.output and "'jpg'" in result.output


def test_jpg_header_declaring_a_huge_image_is_refused_before_decoding(lrw_clip):
    """A JPEG whose frame header (SOF) claims 65535 x 65535 pixels is refused from its header, not decoded."""
    smooth = np.full_like(lrw_clip, 128)  # compresses well: a small member with a small budget
    data = bytearray(encode_field("mouth.jpg", smooth))
    sof = next(i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2))
    meta = json.dumps({"num_frames": len(lrw_clip)}).encode()
    big = int((2 * 1024 * len(data)) ** 0.5)  # twice the budget (avbridge.bounds.JPEG_MAX_RATIO), under Pillow's limit
    assert big * big < 178_956_970
    for side, message in ((big, rf"declares {big}x{big} L = {big * big} bytes, over the"),
                          (65535, r"DecompressionBombError")):  # Pillow refuses this one itself, from the header
        data[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2  # height, width
        raw = {"__key__": "k", "mouth.jpg": bytes(data), "json": meta}
        with pytest.raises(ValueError, match=r"sample k: mouth\.jpg: .*" + message):
            decode_sample(raw, fields=("mouth", "json"))
    too_many = {"__key__": "k", "mouth.jpg": encode_field("mouth.jpg", lrw_clip),
                "json": json.dumps({"num_frames": len(lrw_clip) - 5}).encode()}
    with pytest.raises(ValueError, match=r"declares \d+ frames, more than"):
        decode_sample(too_many, fields=("mouth", "json"))


def test_h264_encoder_keeps_its_own_copy_of_frames_made_over_the_planes():
    # encode_video hands x264 frames that point into its plane array (no copy); the encoder must copy them on
    # send, or frames it buffers for lookahead would change under it when the array does.
    import av

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (12, 32, 48), np.uint8)
    planes, _ = codecs._yuv_planes(frames)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.options = {"crf": "0", "preset": "veryfast", "threads": "1"}
        for index, plane in enumerate(planes):
            vf = codecs._yuv_frame(plane)
            vf.pts = index
            for packet in stream.encode(vf):
                container.mux(packet)
            plane[:] = 0  # overwritten while x264 still holds the frame in its lookahead
        for packet in stream.encode(None):
            container.mux(packet)
    decoded = np.stack([f.to_ndarray()[:32] for f in av.open(io.BytesIO(buf.getvalue())).decode(video=0)])
    assert len(decoded) == 12
    assert np.abs(decoded.astype(int) - frames).max() <= 1  # CRF 0 is lossless up to the range rounding
