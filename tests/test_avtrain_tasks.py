"""The task protocol: every task trains a step under CPU bf16 autocast with finite losses, its memory addressing in
fp32; the engine and data module get fields, losses and validation from the task."""

import pytest
import torch

from avtrain.config import validate_recipe
from avtrain.data import MEL_PER_FRAME
from avtrain.engine.distributed import add_sums
from avtrain.models.masked import masked_mean
from avtrain.tasks import Fields, task_for

COMMON = {"output_dir": "x", "data": {"shards": "s"}, "trainer": {"progress": False}}
TINY_FRONT = {"visual_frontend_conf": {"stem_channels": 4, "widths": [4, 4, 8, 8], "blocks": [1, 1, 1, 1]},
              "audio_frontend_conf": {"channels": [4, 8]}}
RECIPES = {
    "lipreading": {**TINY_FRONT, "memory_conf": {"num_slots": 5}, "backend_conf": {"hidden": 8},
                   "model_conf": {"num_classes": 4, "embed_dim": 8}},
    "mtlam": {**TINY_FRONT, "model": "mtlam", "memory": "mtlam",
              "memory_conf": {"levels": [1, 2], "num_heads": 2, "num_slots": 4, "key_dim": 4},
              "temporal_conf": {"num_levels": 2, "layers_per_level": 1, "growth_rate": 6, "width": 8,
                                "dilations": [1]},
              "model_conf": {"num_classes": 4, "embed_dim": 8}},
    "speech": {"model": "speech", "memory_conf": {"num_slots": 5},
               "model_conf": {"in_channels": 1, "width": 0.125, "embed_dim": 16, "audio_channels": [4, 8],
                              "decoder": {"prenet_dims": [8, 8], "attention_rnn": 16, "decoder_rnn": 16,
                                          "attention_dim": 8, "location_filters": 4, "postnet_channels": 8}}},
    "two_tower": {"model": "two_tower", "augment": "none",
                  "model_conf": {"width": 0.0625, "fc_dim": 16, "n_linear": 33,
                                 "cbhg": {"bank_size": 2, "bank_channels": 4, "highway_dim": 8, "gru_dim": 8}}},
}
SIZE = {"lipreading": 32, "mtlam": 32, "speech": 96, "two_tower": 32}


def recipe(name):
    return validate_recipe({**COMMON, **RECIPES[name]}, f"<{name}>")


def batch_for(task, size, b=2, t=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([t, t - 2])[:b]
    mask = torch.arange(t)[None] < lengths[:, None]
    frame_mask = mask.repeat_interleave(MEL_PER_FRAME, 1)
    batch = {"video": torch.randn(b, t, 1, size, size, generator=g) * mask[:, :, None, None, None],
             "mel": torch.randn(b, 80, MEL_PER_FRAME * t, generator=g) * frame_mask[:, None],
             "lengths": lengths, "mask": mask, "labels": torch.tensor([1, 3])[:b], "keys": ["a", "b"][:b]}
    fields = task.fields()
    if fields.flow:
        batch["flow"] = torch.randn(b, t - 1, 2, size, size, generator=g)
    if fields.linear:
        batch["linear"] = torch.rand(b, 33, MEL_PER_FRAME * t, generator=g) * frame_mask[:, None]
    return batch


def addressing(name, model, batch):
    """The memory addressing vectors of a forward pass (None for a model without memory)."""
    if name == "lipreading":
        return [model(batch["video"], batch["lengths"], batch["mask"], batch["mel"])["bridge"].src_address]
    if name == "mtlam":
        return list(model(batch["video"], batch["lengths"], batch["mask"], batch["mel"])["addressing"].values())
    if name == "speech":
        out = model(batch["video"], batch["mel"], batch["lengths"], batch["mask"])
        return [out["src_address"], out["tgt_address"]]
    return None


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_task_trains_a_bf16_autocast_step_on_cpu(name):
    torch.manual_seed(0)
    task = task_for(recipe(name))
    model = task.build_model().train()
    batch = batch_for(task, SIZE[name])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, parts = task.losses(model, batch)
        addresses = addressing(name, model, batch)
    assert torch.isfinite(loss) and "total" in parts
    assert all(torch.is_tensor(v) and not v.requires_grad and torch.isfinite(v) for v in parts.values())
    loss.backward()
    opt.step()
    after = [p.detach() for p in model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))  # the step moved the weights
    if addresses is not None:
        assert all(a.dtype == torch.float32 for a in addresses)
        assert all(torch.allclose(a.sum(-1), torch.ones(()), atol=1e-5) for a in addresses)


@pytest.mark.parametrize("name", list(RECIPES))
def test_validation_sums_and_means(name):
    torch.manual_seed(0)
    task = task_for(recipe(name))
    model = task.build_model().eval()
    batch = batch_for(task, SIZE[name])
    with torch.no_grad():
        sums = task.validation_sums(model, batch)
    assert sums["samples"] == 2
    val = task.finish_validation(sums)
    assert val["samples"] == 2 and task.metric in val and "loss" in val and all(v == v for v in val.values())
    # DDP: a rank with no validation clip sends nothing; the means are those of the rank that has them
    merged = task.finish_validation(add_sums([sums, {}]))
    assert merged == val
    # and two ranks with a batch each average over both
    both = task.finish_validation(add_sums([sums, sums]))
    assert both["samples"] == 4 and both[task.metric] == pytest.approx(val[task.metric])


def test_fields_come_from_the_task():
    assert task_for(recipe("lipreading")).fields() == Fields()
    assert task_for(recipe("two_tower")).fields() == Fields(flow=True, linear=True, context=4)  # K // 2 around windows
    no_flow = validate_recipe({**COMMON, **RECIPES["two_tower"],
                               "model_conf": {**RECIPES["two_tower"]["model_conf"], "use_flow": False,
                                              "postnet": False}})
    assert task_for(no_flow).fields() == Fields(flow=False, linear=False, context=4)


def test_masked_mean_ignores_padding():
    values = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert float(masked_mean(values, mask)) == pytest.approx(2.0)


@pytest.mark.parametrize("how", ["weighted", "selected"])  # weighted: CUDA's path (no sync), selected: CPU's
def test_masked_batch_norm_equals_batch_norm_over_the_real_frames(how):
    from avtrain.models import masked

    norm = {"weighted": masked.weighted_batch_norm, "selected": masked.selected_batch_norm}[how]
    torch.manual_seed(0)
    x = torch.randn(3, 5, 7)
    mask = torch.arange(7)[None] < torch.tensor([7, 4, 2])[:, None]
    ours, ref = torch.nn.BatchNorm1d(5), torch.nn.BatchNorm1d(5)
    y = norm(ours, x, mask)
    expected = ref(x.transpose(1, 2)[mask])  # batch norm of the real frames alone
    assert torch.allclose(y.transpose(1, 2)[mask], expected, atol=1e-5)
    assert float(y.detach().transpose(1, 2)[~mask].abs().max()) == 0.0
    assert torch.allclose(ours.running_mean, ref.running_mean, atol=1e-6)
    assert torch.allclose(ours.running_var, ref.running_var, atol=1e-5)
    frozen = torch.nn.BatchNorm1d(5)
    norm(frozen, x, mask, update_stats=False)  # MTLAM's auxiliary pass: batch statistics, running ones unmoved
    assert torch.equal(frozen.running_mean, torch.zeros(5)) and torch.equal(frozen.running_var, torch.ones(5))
    ours.eval(), ref.eval()
    assert torch.allclose(norm(ours, x, mask).transpose(1, 2)[mask], ref(x.transpose(1, 2)[mask]), atol=1e-5)


def test_real_frames_from_host_lengths_match_the_mask():
    from avtrain.models.frontends import VisualFrontend
    from avtrain.models.masked import real_frame_index

    lengths = torch.tensor([4, 1, 3])
    mask = torch.arange(4)[None] < lengths[:, None]
    assert torch.equal(real_frame_index(mask, lengths), mask.flatten().nonzero().squeeze(1))
    torch.manual_seed(0)
    front = VisualFrontend(stem_channels=4, widths=[4, 4, 4, 4], blocks=[1, 1, 1, 1], out_dim=8).train()
    video = torch.randn(3, 4, 1, 24, 24)
    a = front(video, mask, lengths)
    torch.manual_seed(0)
    b = VisualFrontend(stem_channels=4, widths=[4, 4, 4, 4], blocks=[1, 1, 1, 1], out_dim=8).train()(video, mask)
    assert torch.equal(a, b) and float(a.detach()[~mask].abs().max()) == 0.0


@pytest.mark.parametrize("name", ["lipreading", "mtlam", "two_tower"])
def test_compilable_tasks_trace_under_torch_compile(name):
    """Dynamo captures each model allowed trainer.compile (graph breaks allowed) and the compiled model gives the
    eager model's losses (dynamo's 'eager' backend: inductor's code generation takes minutes on these 2 cores)."""
    r = recipe(name)
    assert type(r).COMPILABLE
    torch.manual_seed(0)
    task = task_for(r)
    model = task.build_model().eval()  # no dropout: the two runs must see the same computation
    batch = batch_for(task, SIZE[name])
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager")
    with torch.no_grad():
        eager_loss, _ = task.losses(model, batch)
        compiled_loss, parts = task.losses(compiled, batch)
    assert torch.isfinite(compiled_loss) and torch.allclose(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
