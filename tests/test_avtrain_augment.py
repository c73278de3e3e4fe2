"""Augmentation is applied identically to every frame of a clip, and is a pure function of its generator."""

import numpy as np

from avtrain.data.augment import ClipAugment, random_erase, resize_frames

CONF = {"crop": 24, "flip": True, "erase_prob": 1.0, "erase_area": (0.1, 0.2), "erase_ratio": (0.5, 2.0)}


def clip(t=5, size=32):
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 255, (size, size)).astype(np.float32)
    return np.stack([base + i for i in range(t)])  # frame i = frame 0 + i everywhere


def test_same_crop_flip_erase_on_all_frames():
    video = clip()
    aug = ClipAugment("paper", CONF, mean=0.4, std=0.2)
    for seed in range(20):
        out = aug(video, np.random.default_rng(seed))
        assert out.shape == (5, 24, 24) and out.dtype == np.float32
        erased = out == 0.0
        assert erased.any() and all((erased[i] == erased[0]).all() for i in range(5))
        # outside the erased box, frame i - frame 0 is the constant i / (std * 255): same crop and flip everywhere
        diff = (out[4] - out[0])[~erased[0]]
        assert np.allclose(diff, 4 / (0.2 * 255), atol=1e-4)


def test_flip_and_crop_vary_across_clips_but_replay_with_the_seed():
    video = clip()
    aug = ClipAugment("paper", {**CONF, "erase_prob": 0.0}, mean=0.0, std=1 / 255)
    outs = [aug(video, np.random.default_rng(s)) for s in range(30)]
    assert len({o.tobytes() for o in outs}) > 5
    assert np.array_equal(aug(video, np.random.default_rng(7)), outs[7])
    # every output is a crop of the input or of its mirror image
    for o in outs:
        found = any(np.array_equal(o[0], src[y : y + 24, x : x + 24])
                    for src in (video[0], video[0][:, ::-1]) for y in range(9) for x in range(9))
        assert found


def test_eval_is_a_deterministic_centre_crop():
    video = clip()
    aug = ClipAugment("paper", CONF, mean=0.0, std=1 / 255)
    out = aug(video, None)
    assert np.array_equal(out, video[:, 4:28, 4:28])


def test_erase_respects_probability():
    video = np.ones((3, 20, 20), np.float32)
    hits = sum((random_erase(video, np.random.default_rng(s), 0.5, (0.1, 0.2), (0.5, 2)) == 0).any()
               for s in range(200))
    assert 70 < hits < 130


def test_resize_is_a_box_average_for_integer_factors():
    video = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    out = resize_frames(video, 2)
    assert out.shape == (2, 2, 2) and out[0, 0, 0] == np.mean([0, 1, 4, 5])
    assert resize_frames(np.full((1, 112, 112), 9, np.uint8), 48).max() == 9.0


def test_resize_is_an_area_average_for_non_integer_factors():
    # 112 -> 64 (the CPU recipes' mouth): every output pixel is the mean of the source area it covers, so a
    # pattern finer than the output grid averages out instead of aliasing (bilinear sampling keeps its extremes)
    stripes = np.zeros((1, 112, 112), np.uint8)
    stripes[:, :, ::2] = 255  # one-pixel stripes: area mean 127.5 everywhere
    out = resize_frames(stripes, 64)
    assert out.shape == (1, 64, 64)
    assert np.allclose(out, 127.5, atol=128 / 7 + 1e-3)  # 1.75 source pixels per output pixel: at most 1/7 off
    assert out.std() < 25
    # the total intensity is kept: mean over the image unchanged
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (3, 112, 112)).astype(np.uint8)
    assert abs(resize_frames(video, 64).mean() - video.mean()) < 1e-3
    # an exact hand computation on a 3 -> 2 row/column resize: output pixel 0 covers source 0 and half of 1
    small = np.array([[[0, 30, 60], [90, 120, 150], [180, 210, 240]]], np.uint8)
    expect_row = lambda r: [(r[0] + 0.5 * r[1]) / 1.5, (0.5 * r[1] + r[2]) / 1.5]  # noqa: E731
    rows = np.array([expect_row(r) for r in small[0].astype(float)])  # (3, 2) after the column pass
    expect = np.array([expect_row(rows[:, c]) for c in range(2)]).T
    assert np.allclose(resize_frames(small, 2)[0], expect, atol=1e-4)
