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
    hits = sum((random_erase(video, np.random.default_rng(s), 0.5, (0.1, 0.2), (0.5, 2)) == 0).any() for s in range(200))
    assert 70 < hits < 130


def test_resize_is_a_box_average_for_integer_factors():
    video = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    out = resize_frames(video, 2)
    assert out.shape == (2, 2, 2) and out[0, 0, 0] == np.mean([0, 1, 4, 5])
    assert resize_frames(np.full((1, 112, 112), 9, np.uint8), 48).max() == 9.0
