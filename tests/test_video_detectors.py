"""clip_stan and timesformer on tiny towers: shapes, what trains, identity at init, learning, save/load."""
import re

import pytest
import torch

from declip_plugin.detectors.base import save_detector_checkpoint
from declip_plugin.detectors import build_detector
from declip_plugin.detectors.clip_stan import TemporalAttention
from declip_plugin.detectors.base import capability

STAN = {"model_name": "clip_stan", "backbone": "declip-tiny-vit", "pretrained": "none", "depth": 2}
# timm's tiny test_efficientnet (256 channels) stands in for EfficientNet-B0 in the fast tests
TSF = {"model_name": "timesformer_effb0", "encoder": "test_efficientnet", "pretrained": "none", "resolution": 64,
       "heads": 4, "mlp_ratio": 1.0}


def clip_batch(b=2, t=4, size=224, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(b, t, 3, size, size, generator=g), "label": torch.tensor([0, 1] * (b // 2))}


@pytest.mark.parametrize("cfg,size", [(STAN, 224), ({**STAN, "time_module": "conv", "depth": 1}, 224),
                                      ({**STAN, "branch_init": "random"}, 224), (TSF, 64)])
def test_shapes_end_to_end(cfg, size):
    torch.manual_seed(0)
    det = build_detector(cfg).eval()
    assert capability(det, "input_kind") == "clip" and capability(det, "produces_mask") is False
    with torch.no_grad():
        out = det(clip_batch(2, 4, size))
        frames = det({"image": torch.randn(3, 3, size, size)})  # a frame batch is one-frame clips
    assert out["cls"].shape == (2, 2) and out["prob"].shape == (2,) and out["feat"].dim() == 2
    assert torch.allclose(out["prob"], torch.softmax(out["cls"], 1)[:, 1])
    assert frames["cls"].shape == (3, 2)


# documented trainable set, written as name patterns (independent of how the detector selects them)
STAN_TRAINS = re.compile(r"^(temporal\.|time_embed\.|head\.)|(\.ln_pre|\.ln_post|\.ln_1|\.ln_2|\.norm)\.(weight|bias)$")


def test_clip_stan_trains_exactly_the_documented_parameters():
    det = build_detector({**STAN, "depth": 2})
    names = dict(det.named_parameters())
    trains = {n for n, p in names.items() if p.requires_grad}
    assert trains == {n for n in names if STAN_TRAINS.search(n)}
    # and the documented frozen ones are there and frozen
    for frozen in ("backbone.visual.conv1.weight", "backbone.visual.positional_embedding",
                   "backbone.visual.class_embedding", "backbone.visual.transformer.resblocks.1.attn.in_proj_weight",
                   "spatial.0.block.attn.in_proj_weight", "spatial.1.block.mlp.c_fc.weight"):
        assert not names[frozen].requires_grad
    assert "backbone.visual.proj" not in names


def test_clip_stan_vit_b16_trainable_count_matches_the_seed_less_its_two_stray_parameters():
    """ViT-B/16, depth 4: the seed logs 11,922,434 of 126,020,354; it also trains its class embedding
    (768) and holds an unused CLS token (768, trained)."""
    det = build_detector({"model_name": "clip_stan", "backbone": "ViT-B/16", "pretrained": "none", "depth": 4})
    s = det.parameter_summary()
    assert s["trainable"] == 11_922_434 - 2 * 768
    assert s["total"] == 126_020_354 - 768
    assert round(100 * s["fraction"], 2) == 9.46


def test_clip_stan_branch_starts_from_the_clip_blocks():
    det = build_detector({**STAN, "depth": 2})
    first = len(det.backbone.visual.transformer.resblocks) - 2
    for j in range(2):
        ours = det.spatial[j].block.state_dict()
        clip = det.backbone.visual.transformer.resblocks[first + j].state_dict()
        assert all(torch.equal(ours[k], clip[k]) for k in clip)
    rnd = build_detector({**STAN, "depth": 2, "branch_init": "random"})
    clip = rnd.backbone.visual.transformer.resblocks[first].state_dict()
    assert not torch.equal(rnd.spatial[0].block.state_dict()["attn.in_proj_weight"], clip["attn.in_proj_weight"])


def test_timesformer_trains_everything():
    det = build_detector(TSF)
    assert all(p.requires_grad for p in det.parameters())
    assert det.parameter_summary()["fraction"] == 1.0


def test_clip_stan_temporal_attention_is_the_identity_at_init():
    torch.manual_seed(0)
    layer = TemporalAttention(64, 2)
    x = torch.randn(2, 4, 9, 64)
    assert torch.equal(layer(x), x)
    # and it is not dead: the zero projection gets a gradient
    layer(x).pow(2).sum().backward()
    x2 = torch.randn(2, 4, 9, 64)
    (layer(x2) * torch.randn_like(x2)).sum().backward()
    assert layer.temporal_fc.weight.grad.abs().sum() > 0
    # inside the detector: at init the branch's temporal layers leave a constant-in-time clip alone;
    # with the time embedding zeroed (so that frames do not differ by it), a clip of 4 identical
    # frames gives the output of that single frame
    det = build_detector({**STAN, "drop_path": 0.0}).eval()
    torch.nn.init.zeros_(det.time_embed.weight)
    frame = torch.randn(1, 1, 3, 224, 224)
    with torch.no_grad():
        one = det({"image": frame})["cls"]
        four = det({"image": frame.expand(1, 4, 3, 224, 224)})["cls"]
    assert torch.allclose(one, four, atol=1e-5)


@pytest.mark.parametrize("cfg,size", [(STAN, 224), (TSF, 64)])
def test_loss_drops_on_a_fixed_batch(cfg, size):
    torch.manual_seed(0)
    det = build_detector({**cfg, "drop_path": 0.0}).train()
    batch = clip_batch(2, 2, size, seed=1)
    batch["image"][1] = 0.3 * batch["image"][1] + 1.0  # the two clips differ in their statistics
    opt = torch.optim.Adam([p for p in det.parameters() if p.requires_grad], lr=2e-2)
    losses = []
    for _ in range(8):
        loss = det.get_losses(batch, det(batch))["overall"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("cfg,size", [(STAN, 224), (TSF, 64)])
def test_save_load_identical(tmp_path, cfg, size):
    torch.manual_seed(0)
    det = build_detector(cfg)
    with torch.no_grad():  # move the trained parts away from their init
        for p in det.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    det.eval()
    path = save_detector_checkpoint(str(tmp_path / "ckpt.pth"), det)
    torch.manual_seed(123)  # another random init underneath
    loaded = build_detector(cfg, weights_path=path).eval()
    batch = clip_batch(2, 3, size, seed=2)
    with torch.no_grad():
        assert torch.equal(det(batch)["cls"], loaded(batch)["cls"])


# --- fidelity to the seed (DeepFakesDetection's clip_stan): docs/video.md ---------------------------
def test_clip_stan_time_embed_starts_as_nn_embedding_default():
    """The seed's time_embed is nn.Embedding's N(0, 1) (64 x D values: the std is 1 within a few %)."""
    torch.manual_seed(0)
    std = build_detector(STAN).time_embed.weight.std().item()
    assert 0.95 < std < 1.05, std


def test_clip_stan_random_branch_and_temporal_attention_start_as_nn_linear():
    """branch_init: random and every temporal attention start as the seed's HF layers built outside
    from_pretrained: nn.Linear's default, U(+-1/sqrt(D)) weights and biases (MultiheadAttention's own
    init is xavier with zero biases)."""
    torch.manual_seed(0)
    det = build_detector({**STAN, "branch_init": "random"})
    for attn in (det.spatial[0].block.attn, det.temporal[0].attn):
        bound = 1 / attn.embed_dim ** 0.5
        for t in (attn.in_proj_weight, attn.in_proj_bias, attn.out_proj.bias):
            assert t.abs().max() <= bound and t.abs().max() > 0.9 * bound


def test_clip_stan_dropout_is_element_wise_before_temporal_fc_as_the_seed():
    """drop_mode dropout (default): the temporal attention's output is dropped element-wise before
    temporal_fc; drop_path drops whole samples after it."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 32)
    for mode in ("dropout", "drop_path"):
        layer = TemporalAttention(32, 2, drop_path=0.5, drop_mode=mode).train()
        with torch.no_grad():
            layer.temporal_fc.weight.copy_(torch.eye(32))  # temporal_fc = identity: the drop shows as is
        delta = (layer(x) - x).detach()
        zero_per_sample = (delta == 0).flatten(1).float().mean(1)
        if mode == "dropout":  # about half the elements of every sample
            assert ((zero_per_sample > 0.3) & (zero_per_sample < 0.7)).all(), zero_per_sample
        else:  # a sample is dropped whole or not at all
            assert set(zero_per_sample.tolist()) <= {0.0, 1.0}, zero_per_sample
