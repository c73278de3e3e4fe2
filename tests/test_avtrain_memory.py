"""The associative bridge: Eq. 1-6, both variants' gradient paths, masks, and the N = 0 baseline."""

import pytest
import torch
import torch.nn.functional as F

from avtrain.models.memory import AssociativeBridge


def make(variant, n=5, c=6, d=4, seed=0):
    torch.manual_seed(seed)
    return AssociativeBridge(n, c, d, scale=16.0, variant=variant)


def test_paper_equations_by_hand():
    m = make("paper")
    src, tgt = torch.randn(2, 3, 6), torch.randn(2, 3, 4)
    out = m(src, tgt)
    # Eq. 1-2 by hand for one (batch, frame)
    s = torch.stack([F.cosine_similarity(m.key_memory[i], src[1, 2], dim=0) for i in range(5)])
    assert torch.allclose(out.src_address[1, 2], torch.softmax(16 * s, 0), atol=1e-6)
    assert torch.allclose(out.src_address.sum(-1), torch.ones(2, 3), atol=1e-6)
    # Eq. 3, 6
    assert torch.allclose(out.reconstructed, out.tgt_address @ m.value_memory, atol=1e-6)
    assert torch.allclose(out.recalled, out.src_address @ m.value_memory, atol=1e-6)
    # Eq. 4 and 5, averaged over frames (Alg. 1 line 16)
    save = ((tgt - out.reconstructed) ** 2).sum(-1).mean()
    kl = (out.tgt_address * (out.tgt_address.log() - out.src_address.log())).sum(-1).mean()
    assert torch.allclose(out.losses["save"], save, atol=1e-5)
    assert torch.allclose(out.losses["bridge"], kl, atol=1e-5)


def grads(m, src, tgt, which):
    for p in [*m.parameters(), src, tgt]:
        p.grad = None
    out = m(src, tgt)
    loss = {"recall": out.recalled.sum(), "save": out.losses["save"], "bridge": out.losses["bridge"]}[which]
    loss.backward()
    return {"value": m.value_memory.grad, "key": m.key_memory.grad, "tgt": tgt.grad, "src": src.grad}


def nonzero(g):
    return g is not None and float(g.abs().sum()) > 0


def test_paper_variant_gradients_flow_everywhere():
    m = make("paper")
    src, tgt = torch.randn(2, 3, 6, requires_grad=True), torch.randn(2, 3, 4, requires_grad=True)
    g = grads(m, src, tgt, "recall")
    assert nonzero(g["value"]) and nonzero(g["key"]) and nonzero(g["src"])
    g = grads(m, src, tgt, "save")
    assert nonzero(g["value"]) and nonzero(g["tgt"])
    g = grads(m, src, tgt, "bridge")
    assert nonzero(g["key"]) and nonzero(g["tgt"]) and nonzero(g["value"])  # A_tgt is not detached


def test_official_variant_detaches_as_the_public_code():
    m = make("official")
    assert isinstance(m.src_embed, torch.nn.Linear) and isinstance(m.tgt_embed, torch.nn.Linear)
    src, tgt = torch.randn(2, 3, 6, requires_grad=True), torch.randn(2, 3, 4, requires_grad=True)
    g = grads(m, src, tgt, "recall")
    assert g["value"] is None and nonzero(g["key"])  # recall reads a detached value memory
    g = grads(m, src, tgt, "save")
    assert nonzero(g["value"]) and g["tgt"] is None  # the audio feature is detached
    g = grads(m, src, tgt, "bridge")
    # A_tgt detached: neither the value memory nor the audio side learns from the bridge
    assert nonzero(g["key"]) and g["value"] is None and g["tgt"] is None
    assert m.tgt_embed.weight.grad is None or float(m.tgt_embed.weight.grad.abs().sum()) == 0
    out = m(src, tgt)
    assert torch.allclose(out.losses["save"], F.mse_loss(out.reconstructed, tgt), atol=1e-6)


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_mask_ignores_padded_frames(variant):
    m = make(variant)
    src, tgt = torch.randn(1, 4, 6), torch.randn(1, 4, 4)
    mask = torch.tensor([[True, True, False, False]])
    padded = src.clone(), tgt.clone()
    padded[0][:, 2:] = 100.0
    padded[1][:, 2:] = -50.0
    a = m(src[:, :2], tgt[:, :2])
    b = m(*padded, mask=mask)
    for k in ("save", "bridge"):
        assert torch.allclose(a.losses[k], b.losses[k], atol=1e-5)


def test_no_target_gives_recall_only():
    out = make("paper")(torch.randn(2, 3, 6))
    assert out.recalled.shape == (2, 3, 4) and out.tgt_address is None and out.losses == {}


def test_zero_slots_is_refused():
    with pytest.raises(ValueError, match="N = 0"):
        AssociativeBridge(0, 4, 4)


def test_addressing_runs_in_fp32_under_bf16_autocast():
    """bf16 autocast must not reach the addressing: r = 16 times a bf16 cosine would move the logits by up to 0.06."""
    from avtrain.models.mtlam import LipAudioMemory

    torch.manual_seed(0)
    bridge = AssociativeBridge(num_slots=32, src_dim=64, tgt_dim=64)
    level = LipAudioMemory(dim=64, num_slots=32, num_heads=2, key_dim=16)
    src, tgt = torch.randn(2, 7, 64), torch.randn(2, 7, 64)
    plain_bridge, plain_level = bridge(src, tgt), level(src, tgt)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto_bridge, auto_level = bridge(src.bfloat16(), tgt.bfloat16()), level(src.bfloat16(), tgt.bfloat16())
    # inputs rounded to bf16 by the layer before are the only difference left: compare with fp32 on those inputs
    ref_bridge, ref_level = bridge(src.bfloat16().float(), tgt.bfloat16().float()), level(src.bfloat16().float())
    for auto, ref in ((auto_bridge.src_address, ref_bridge.src_address),
                      (auto_bridge.tgt_address, ref_bridge.tgt_address),
                      (auto_level.addressing, ref_level.addressing)):
        assert auto.dtype == torch.float32
        assert torch.allclose(auto, ref, atol=1e-6, rtol=0)
    assert plain_bridge.src_address.dtype == plain_level.addressing.dtype == torch.float32


def test_eval_statistics_measure_how_close_recall_is_to_the_real_audio_feature():
    """The lip-reading evaluation's recall cosine: +1 when the memory recalls the real audio feature, -1 for its
    negation, and padded frames are not counted."""
    from avtrain.tasks.lipreading.evaluate import MemoryStats

    m = make("official")
    src, tgt = torch.randn(2, 3, 6), torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    with torch.no_grad():  # as in evaluation
        bridge = m(src, tgt, mask)
    cosines = {}
    for name, real in (("same", bridge.recalled), ("negated", -bridge.recalled)):
        real = real.clone()
        real[1, 1:] = bridge.recalled[1, 1:].neg()  # padding pointing the other way must not count
        stats = MemoryStats(5)
        stats.add({"bridge": bridge, "audio_features": real, "logits_audio": torch.zeros(2, 3)}, mask,
                  torch.zeros(2, dtype=torch.long))
        cosines[name] = stats.summary()["recall_cosine"]
    assert cosines["same"] == pytest.approx(1.0, abs=1e-5) and cosines["negated"] == pytest.approx(-1.0, abs=1e-5)
    # the reference: a memory that recalls the mean real feature whatever the video scores exactly the constant's
    real = torch.randn(2, 3, 4) + 2.0
    mean = real[mask].mean(0)
    constant = type(bridge)(recalled=mean.expand(2, 3, 4), src_address=bridge.src_address,
                            tgt_address=bridge.tgt_address)
    stats = MemoryStats(5)
    for half in (0, 1):  # in two batches, as the loader gives them
        stats.add({"bridge": type(bridge)(**{k: getattr(constant, k)[half:half + 1] for k in
                                            ("recalled", "src_address", "tgt_address")}),
                   "audio_features": real[half:half + 1], "logits_audio": torch.zeros(1, 3)}, mask[half:half + 1],
                  torch.zeros(1, dtype=torch.long))
    s = stats.summary()
    assert s["recall_cosine"] == pytest.approx(s["recall_cosine_constant"], abs=1e-5)
    assert 0.3 < s["recall_cosine_constant"] < 1.0  # features around a common offset: well above 0, below 1
