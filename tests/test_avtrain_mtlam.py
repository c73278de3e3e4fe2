"""MTLAM: Eq. 1 receptive fields matched level by level, the multi-head memories (Eq. 2-3), Eq. 6, levels."""

import pytest
import torch
import torch.nn.functional as F

from avtrain.config import DCTCNConf, MSTCNConf, validate_recipe
from avtrain.models.mtlam import LipAudioMemory, MTLAMLipReading, value_slot_loss
from avtrain.models.tcn import build_matched_towers, conv_receptive_field, receptive_fields, temporal_spec
from avtrain.tasks import task_for
from avtrain.tasks.lipreading.losses import MTLAMWeights, mtlam_loss


@pytest.fixture(autouse=True)
def one_thread():
    # tiny kernels on the shared 2-core machines run far faster on one OpenMP thread (docs/training.md)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_dctcn(kernels=(3, 5), **kw):
    base = dict(num_levels=3, layers_per_level=2, growth_rate=6, width=12, kernel_sizes=kernels, dilations=(1, 2),
                dropout=0.0, squeeze_excitation=False, activation="prelu")  # the former DCTCNSpec default
    return temporal_spec("dctcn", DCTCNConf(**{**base, **kw}).model_dump())


def tiny_mstcn(kernels=(3, 5), **kw):
    conf = MSTCNConf(**{**dict(num_levels=3, width=6, kernel_sizes=kernels, dilations=(1, 2, 4), dropout=0.0), **kw})
    return temporal_spec("mstcn", conf.model_dump())


def test_eq_1_and_the_reference_configurations():
    assert conv_receptive_field(3, 1) == 3  # the paper's example
    assert [conv_receptive_field(k, d) for k, d in [(3, 2), (7, 5), (5, 4)]] == [5, 31, 17]
    # DC-TCN: per block 3 dense layers x 2 convs, largest kernel 7, dilations 1, 2, 5 -> +96 frames per level
    assert receptive_fields(temporal_spec("dctcn", DCTCNConf().model_dump())) == [97, 193, 289, 385]
    # MS-TCN: 2 convs per block, kernel 7, dilation 2^i -> +12, +24, +48, +96
    assert receptive_fields(temporal_spec("mstcn", MSTCNConf().model_dump())) == [13, 37, 85, 181]


def influenced_frames(tower, t=40, frames=81, dim=16):
    """Per level, the output frames whose value depends on input frame t. Batch row tau holds the same clip and
    back-propagates from output frame tau only (an eval-mode tower treats rows independently), so one backward
    pass gives d out[tau] / d x[t] for every tau: exact zeros outside the receptive field, where output
    differences would round away the faint paths at its edge."""
    torch.manual_seed(0)
    x = torch.randn(1, frames, dim, dtype=torch.float64).expand(frames, -1, -1).clone().requires_grad_(True)
    mask = torch.ones(frames, frames, dtype=torch.bool)
    rows = torch.arange(frames)
    found = []
    for out in tower(x, mask):
        (grad,) = torch.autograd.grad(out[rows, rows].sum(), x, retain_graph=True)
        found.append(torch.nonzero(grad[:, t].abs().amax(-1) > 0).flatten().tolist())
    return found


@pytest.mark.parametrize("make", [tiny_dctcn, tiny_mstcn])
def test_an_impulse_reaches_the_same_frames_in_both_towers(make):
    # the audio tower is built differently (one kernel branch instead of two) but with the same receptive fields
    visual, audio = build_matched_towers(16, 16, make((3, 5)), make((5,)))
    t = 40
    expected = [list(range(t - (r - 1) // 2, t + (r - 1) // 2 + 1)) for r in receptive_fields(make())]
    assert len(expected[-1]) < 81 and len(expected[0]) > 1  # the clip is longer than the largest field
    got = [influenced_frames(tower.double().eval()) for tower in (visual, audio)]
    assert got[0] == expected and got[1] == expected


def test_mismatched_receptive_fields_are_refused():
    with pytest.raises(ValueError, match="receptive fields"):
        build_matched_towers(16, 16, tiny_dctcn(), tiny_dctcn(dilations=(1, 3)))
    with pytest.raises(ValueError, match="receptive fields"):
        build_matched_towers(16, 16, tiny_mstcn(), tiny_mstcn(kernels=(3,)))


# ---------------------------------------------------------------- the model
def run(model, batch, with_mel=True):
    """The engine's call: (video (B, T, H, W), host lengths, mask, mel)."""
    lengths = batch["mask"].sum(1)
    return model(batch["video"], lengths, batch["mask"], batch["mel"] if with_mel else None)


def make_batch(b=3, t=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([t, t - 2, t - 1][:b])
    mask = torch.arange(t)[None] < lengths[:, None]
    # padded frames are zeros, as the data module's collate makes them
    video = torch.randn(b, t, 16, 16, generator=g) * mask[:, :, None, None]
    mel = torch.randn(b, 80, 4 * t, generator=g) * mask.repeat_interleave(4, 1)[:, None, :]
    return {"video": video, "mel": mel, "mask": mask, "label": torch.tensor([0, 3, 1][:b])}


def build(levels=(1, 2, 3), seed=0, temporal=None, **kw):
    torch.manual_seed(seed)
    return MTLAMLipReading.build(5, 12, dict(stem_channels=4, widths=[4, 4, 4, 4], blocks=[1, 1, 1, 1]),
                                 dict(n_mels=80, channels=[4, 4]), temporal or tiny_dctcn(), tuple(levels),
                                 dict(num_heads=2, num_slots=6), **kw)


EQ6 = MTLAMWeights()


def test_shapes_addressing_and_every_loss_term():
    model = build().train()
    batch = make_batch()
    out = run(model, batch)
    loss, terms = mtlam_loss(out, batch["label"], EQ6)
    assert out["logits"].shape == out["logits_visual"].shape == out["logits_audio"].shape == (3, 5)
    assert set(out["addressing"]) == {1, 2, 3}
    for a in out["addressing"].values():
        assert a.shape == (3, 6, 2, 6)  # (B, T, h, N)
        assert torch.allclose(a.sum(-1), torch.ones(3, 6, 2), atol=1e-5)
    assert out["memory"][2].recalled.shape == (3, 6, 12)
    assert {"cls_v", "cls_a", "cls_va", "recon", "contrast", "recon@1", "contrast@3"} <= set(terms)
    assert all(torch.isfinite(v) for v in terms.values())
    eq6 = terms["cls_v"] + terms["cls_a"] + terms["cls_va"] + terms["recon"] + terms["contrast"]
    assert torch.allclose(loss, eq6)
    assert torch.allclose(terms["recon"], terms["recon@1"] + terms["recon@2"] + terms["recon@3"])


def test_eq_2_and_3_by_hand():
    torch.manual_seed(0)
    mem = LipAudioMemory(dim=4, num_slots=5, num_heads=2, key_dim=3, scale=16.0)
    v, a = torch.randn(1, 2, 4), torch.randn(1, 2, 4)
    out = mem(v, a)
    q = mem.query(v[0, 1]).view(2, 3)
    for j in range(2):
        s = F.cosine_similarity(mem.key_memory[j], q[j][None], dim=-1)
        assert torch.allclose(out.addressing[0, 1, j], torch.softmax(16 * s, 0), atol=1e-6)
    heads = torch.cat([out.addressing[0, 1, j] @ mem.value_memory for j in range(2)])
    assert torch.allclose(out.recalled[0, 1], mem.aggregate(heads), atol=1e-5)
    recon = (1 - F.cosine_similarity(out.recalled, a, dim=-1)).mean()
    assert torch.allclose(out.losses["recon"], recon, atol=1e-6)


def test_value_slot_term_prefers_orthogonal_slots():
    orthogonal = torch.eye(6, 8) * 3.0
    identical = torch.ones(6, 8)
    assert value_slot_loss(orthogonal) < 1e-6
    assert torch.isclose(value_slot_loss(identical), torch.tensor(0.5 * 6 * 5))
    mem = LipAudioMemory(dim=8, num_slots=6, num_heads=2)
    with torch.no_grad():
        mem.value_memory.copy_(orthogonal)
    low = mem(torch.randn(1, 3, 8)).losses["contrast"]
    with torch.no_grad():
        mem.value_memory.copy_(identical)
    assert low < mem(torch.randn(1, 3, 8)).losses["contrast"]


def test_memory_levels_are_configurable_and_the_baseline_has_no_memory():
    base = build(levels=())
    names = [n for n, _ in base.named_parameters()]
    assert base.audio is None and base.audio_tcn is None and len(base.memories) == 0
    assert not any(n.startswith(("memories", "audio")) for n in names)
    out = run(base, make_batch())
    loss, terms = mtlam_loss(out, make_batch()["label"], EQ6)
    assert set(terms) == {"cls_v"} and out["addressing"] == {}
    assert torch.allclose(loss, F.cross_entropy(out["logits"], make_batch()["label"]))

    one = build(levels=(2,))
    assert set(one.memories) == {"2"} and set(run(one, make_batch())["addressing"]) == {2}
    # level 0 = after the front-ends (MVM's placement); the last DC-TCN level is the full dense concatenation
    full = build(levels=(0, 1, 2, 3))
    assert [full.memories[str(i)].value_memory.shape for i in range(4)] == [(6, 12)] * 3 + [(6, 24)]
    assert set(run(full, make_batch())["addressing"]) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="memory levels"):
        build(levels=(4,))
    with pytest.raises(ValueError, match="memory levels"):
        build(levels=(1, 1))


def test_engine_call_matches_lipreading_model():
    model = build(temporal=tiny_mstcn()).eval()
    b = make_batch()
    lengths = b["mask"].sum(1)
    video = b["video"].unsqueeze(2)  # the data module's (B, T, 1, H, W)
    out = model(video, lengths, b["mask"], b["mel"])
    assert torch.allclose(out["logits"], run(model, b)["logits"], atol=1e-6)  # (B, T, H, W) video reads the same
    total, parts = mtlam_loss(out, b["label"], EQ6)
    assert total.dim() == 0 and {"cls_va", "cls_v", "cls_a", "recon", "contrast"} <= set(parts)
    # inference needs no audio: the memories recall from video alone, nothing audio-dependent is computed
    silent = model(video, lengths, b["mask"])
    assert "logits_audio" not in silent and "logits_visual" not in silent
    assert torch.allclose(silent["logits"], out["logits"], atol=1e-6)
    assert "recon" not in silent["memory"][1].losses
    # the VSR loss's prediction is the visual stream with no memory at all
    f0 = model.visual(video, b["mask"])
    plain = model.head(model.visual_tcn(f0, b["mask"])[-1], b["mask"])
    assert torch.allclose(out["logits_visual"], plain, atol=1e-6)
    assert not torch.allclose(out["logits"], plain, atol=1e-3)  # the fused stream differs by the recalled audio


def test_padding_does_not_change_a_clip_prediction():
    model = build(temporal=tiny_dctcn(squeeze_excitation=True)).eval()  # SE gates average over real frames only
    b = make_batch()
    alone = {k: v[1:2] for k, v in b.items()}
    t = int(b["mask"][1].sum())
    alone = {"video": alone["video"][:, :t], "mel": alone["mel"][:, :, : 4 * t], "mask": alone["mask"][:, :t]}
    batched = run(model, b)
    single = run(model, alone)
    assert torch.allclose(batched["logits"][1], single["logits"][0], atol=1e-5)
    assert torch.allclose(batched["addressing"][2][1, :t], single["addressing"][2][0], atol=1e-5)


def test_gradient_paths():
    model = build(levels=(0, 1, 2, 3)).train()
    out = run(model, make_batch())
    loss, terms = mtlam_loss(out, make_batch()["label"], EQ6)
    # every parameter takes part in a training step (DDP without find_unused_parameters)
    grads = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True, allow_unused=True)
    assert all(g is not None for g in grads)
    terms["cls_va"].backward(retain_graph=True)
    # every memory feeds the fused prediction (fusion by summation), through its keys and its values
    for m in model.memories.values():
        assert m.key_memory.grad.abs().sum() > 0 and m.value_memory.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    out["memory"][2].losses["recon"].backward()
    # the audio stream is only a target for the memory: reconstruction leaves it alone
    assert all(p.grad is None or not p.grad.any() for p in model.audio_tcn.parameters())
    assert model.memories["2"].value_memory.grad.abs().sum() > 0
    assert model.memories["2"].key_memory.grad.abs().sum() > 0
    # the visual-only VSR pass uses batch statistics but leaves the running ones to the fused stream
    norm = model.visual_tcn.blocks[0].layers[0].first[0].norm
    before = norm.running_mean.clone()
    with model.visual_tcn.frozen_statistics():
        model.visual_tcn(torch.randn(2, 5, 12), torch.ones(2, 5, dtype=torch.bool))
    assert torch.equal(before, norm.running_mean)
    model.visual_tcn(torch.randn(2, 5, 12), torch.ones(2, 5, dtype=torch.bool))
    assert not torch.equal(before, norm.running_mean)


def test_a_few_steps_on_a_tiny_batch_lower_the_loss():
    model = build().train()
    b = make_batch(seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    totals, fused = [], []
    for _ in range(12):
        loss, terms = mtlam_loss(run(model, b), b["label"], EQ6)
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(float(loss.detach()))
        fused.append(float(terms["cls_va"].detach()))
    assert totals[-1] < 0.8 * totals[0]
    assert fused[-1] < 0.5 * fused[0]  # not only the memory terms: the prediction itself fits the batch


def test_the_task_builds_the_model_and_weighs_eq_6_from_the_recipe():
    recipe = validate_recipe({
        "output_dir": "x", "model": "mtlam", "memory": "mtlam", "data": {"shards": "y"},
        "visual_frontend_conf": {"stem_channels": 4, "widths": [4, 4, 4, 4], "blocks": [1, 1, 1, 1]},
        "audio_frontend_conf": {"channels": [4, 4]}, "temporal": "mstcn",
        "temporal_conf": {"num_levels": 3, "width": 6, "kernel_sizes": [3, 5], "dilations": [1, 2, 4]},
        "memory_conf": {"levels": [2], "num_heads": 2, "num_slots": 6, "contrast_weight": 0.1},
        "model_conf": {"num_classes": 5, "embed_dim": 12, "vsr_weight": 0.5}})
    task = task_for(recipe)
    assert task.weights == MTLAMWeights(cls_v=0.5, contrast=0.1)
    model = task.build_model()
    assert model.visual.out_dim == 12 and set(model.memories) == {"2"}
    assert model.visual_tcn.spec == tiny_mstcn(dropout=0.2)
    off = task_for(validate_recipe({**recipe.model_dump(mode="json"),
                                    "model_conf": {"num_classes": 5, "embed_dim": 12, "vsr_weight": 0.0}}))
    assert off.build_model().visual_pass is False  # no VSR term, no visual-only pass
    with pytest.raises(ValueError, match="temporal"):
        temporal_spec("bigru", {})
