import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, roc_auc_score

from declip_plugin.metrics import LocalizationMetrics
from declip_plugin.metrics import localization as loc

BIG = 10.0  # logit: sigmoid(10) ~ 1, sigmoid(-10) ~ 0


def _logits_from_mask(mask):
    return torch.where(torch.as_tensor(mask).bool(), BIG, -BIG).float()


def _square(size, y0, y1, x0, x1):
    m = torch.zeros(size, size)
    m[y0:y1, x0:x1] = 1
    return m


# ---------------------------------------------------------------- numpy brute-force references
def _np_filter(mask, k, erode):
    """min (erode) / max (dilate) k x k filter, pixels outside the image ignored."""
    r = k // 2
    H, W = mask.shape
    pad = np.pad(mask.astype(bool), r, constant_values=erode)
    out = np.ones_like(mask, bool) if erode else np.zeros_like(mask, bool)
    for dy in range(k):
        for dx in range(k):
            win = pad[dy:dy + H, dx:dx + W]
            out = (out & win) if erode else (out | win)
    return out


def _brute_best_f1(scores, gt, erode=15, dilate=11):
    pos = _np_filter(gt, erode, True)
    neg = ~_np_filter(gt, dilate, False)
    if not pos.any():
        pos, neg = gt.astype(bool), ~gt.astype(bool)
    valid = pos | neg
    best = 0.0
    for t in list(np.unique(scores)) + [np.inf]:
        p = scores >= t
        tp = np.sum(p & pos & valid)
        fp = np.sum(p & neg & valid)
        fn = np.sum(~p & pos & valid)
        if 2 * tp + fp + fn:
            best = max(best, 2 * tp / (2 * tp + fp + fn))
    return best


def _blob_gt(rng, size):
    g = np.zeros((size, size), bool)
    for _ in range(2):
        cy, cx = rng.integers(0, size, 2)
        ry, rx = rng.integers(5, size // 2, 2)
        yy, xx = np.ogrid[:size, :size]
        g |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return g


# ------------------------------------------------------------------------------- hand-made cases
def test_perfect_prediction():
    gt = _square(64, 10, 40, 20, 50)
    m = LocalizationMetrics()
    m.update(_logits_from_mask(gt)[None, None], gt[None, None])
    r = m.compute()
    assert r["iou"] == pytest.approx(100.0)
    assert r["f1"] == pytest.approx(1.0)
    assert r["f1_best"] == pytest.approx(1.0)
    assert r["pixel_ap"] == pytest.approx(1.0)
    assert r["pixel_auc"] == pytest.approx(1.0)
    assert r["n_manipulated"] == 1 and r["n_empty_gt"] == 0 and math.isnan(r["empty_gt_fp_rate"])


def test_all_zero_prediction_on_nonempty_mask():
    gt = _square(64, 10, 40, 20, 50)
    m = LocalizationMetrics()
    m.update(torch.full((1, 1, 64, 64), -BIG), gt[None, None])
    r = m.compute()
    assert r["iou"] == 0.0
    assert r["f1"] == 0.0
    assert r["pixel_auc"] == pytest.approx(0.5)  # constant prediction: all ties


def test_half_overlap_values():
    gt = _square(32, 0, 32, 0, 16)          # left half
    pred = _square(32, 0, 32, 8, 24)        # overlaps a quarter of the image with the GT
    assert loc.iou(pred, gt) == pytest.approx(100 / 3)
    assert loc.f1(pred, gt) == pytest.approx(0.5)


def test_trufor_band_shape():
    gt = _square(64, 17, 47, 17, 47)  # 30 x 30 square
    pos, neg = loc.trufor_band(gt)
    np.testing.assert_array_equal(pos.numpy(), _square(64, 24, 40, 24, 40).bool().numpy())
    np.testing.assert_array_equal(neg.numpy(), ~_square(64, 12, 52, 12, 52).bool().numpy())
    # the image border does not erode the mask
    gt = _square(64, 0, 30, 0, 30)
    pos, _ = loc.trufor_band(gt)
    np.testing.assert_array_equal(pos.numpy(), _square(64, 0, 23, 0, 23).bool().numpy())
    # batched matches brute force
    rng = np.random.default_rng(0)
    gts = np.stack([_blob_gt(rng, 48) for _ in range(3)])
    pos, neg = loc.trufor_band(torch.tensor(gts)[:, None])
    for i in range(3):
        np.testing.assert_array_equal(pos[i].numpy(), _np_filter(gts[i], 15, True))
        np.testing.assert_array_equal(neg[i].numpy(), ~_np_filter(gts[i], 11, False))


def test_band_is_ignored_by_f1_best():
    gt = _square(64, 17, 47, 17, 47)
    # differs from the GT only inside the band: grown by 5 px outside, shrunk by 7 px inside
    grown = _square(64, 12, 52, 12, 52)
    inner = _square(64, 24, 40, 24, 40)
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None]) % 2).float()
    noisy_band = torch.maximum(inner, (grown - inner) * checker)  # band pixels half on, half off
    for pred in (grown, inner, noisy_band):
        m = LocalizationMetrics()
        m.update(_logits_from_mask(pred)[None, None], gt[None, None])
        r = m.compute()
        assert r["f1_best"] == pytest.approx(1.0)
        assert r["f1"] < 0.95 and r["iou"] < 90
    # one pixel outside the band costs f1_best
    worse = grown.clone()
    worse[2, 2] = 1
    m = LocalizationMetrics()
    m.update(_logits_from_mask(worse)[None, None], gt[None, None])
    assert m.compute()["f1_best"] < 1.0


def test_thin_mask_falls_back_to_no_band():
    gt = torch.zeros(64, 64)
    gt[30:33, 5:60] = 1  # 3 px thick: the 15x15 erosion empties it
    pred = gt.clone()
    pred[10, 10] = 1
    m = LocalizationMetrics()
    m.update(_logits_from_mask(pred)[None, None], gt[None, None])
    r = m.compute()
    tp = float(gt.sum())
    assert r["f1_best"] == pytest.approx(2 * tp / (2 * tp + 1))
    assert r["n_f1_best_unbanded"] == 1


@pytest.mark.parametrize("gt_size", [512, 128])
def test_prediction_resized_to_gt(gt_size):
    # prediction at 256: left half manipulated
    pred = torch.full((1, 1, 256, 256), -BIG)
    pred[..., :128] = BIG
    gt = torch.zeros(1, 1, gt_size, gt_size)
    gt[..., : gt_size // 2] = 1
    m = LocalizationMetrics()
    m.update(pred, gt)
    r = m.compute()
    assert r["iou"] == pytest.approx(100.0)
    assert r["f1"] == pytest.approx(1.0)
    # GT = left quarter: IoU 50, F1 2/3
    gt = torch.zeros(1, gt_size, gt_size, 1)  # (B, H, W, 1) layout
    gt[:, :, : gt_size // 4] = 1
    m = LocalizationMetrics()
    m.update(pred, gt)
    r = m.compute()
    assert r["iou"] == pytest.approx(50.0)
    assert r["f1"] == pytest.approx(2 / 3)


def test_resize_matches_manual_reference():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 64, 64) * 3
    gt = (F.avg_pool2d(torch.rand(2, 1, 96, 96), 9, 1, 4) > 0.5).float()
    m = LocalizationMetrics()
    m.update(logits, gt[:, 0])  # (B, H, W) layout
    probs = F.interpolate(torch.sigmoid(logits), size=(96, 96), mode="bilinear",
                          align_corners=False, antialias=True)  # torchvision's resize (official code)
    for i, rec in enumerate(m.per_image):
        p = probs[i, 0].numpy().ravel()
        g = gt[i, 0].numpy().ravel().astype(int)
        pb = p > 0.5
        tp, fp, fn = np.sum(pb & (g == 1)), np.sum(pb & (g == 0)), np.sum(~pb & (g == 1))
        assert rec["iou"] == pytest.approx(100 * tp / (tp + fp + fn))
        assert rec["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert rec["pixel_ap"] == pytest.approx(average_precision_score(g, p), abs=1e-9)
        assert rec["pixel_auc"] == pytest.approx(roc_auc_score(g, p), abs=1e-9)


def test_shrinking_resize_antialiases_as_torchvision():
    """A 256 px map scored on 224 px masks (DeepfakeBench's): the probabilities are resized as the
    official validate.py's torchvision F.resize does (bilinear, antialiased); without antialiasing
    the IoU of this map moves by more than the tolerance."""
    from torchvision.transforms import functional as TF

    torch.manual_seed(1)
    logits = F.avg_pool2d(torch.randn(1, 1, 256, 256) * 8, 5, 1, 2)  # features a few pixels wide
    gt = (F.avg_pool2d(torch.rand(1, 1, 224, 224), 31, 1, 15) > 0.5).float()
    m = LocalizationMetrics()
    m.update(logits, gt)
    official = TF.resize(torch.sigmoid(logits)[0], [224, 224], interpolation=TF.InterpolationMode.BILINEAR)
    plain = F.interpolate(torch.sigmoid(logits), size=(224, 224), mode="bilinear", align_corners=False)[0]

    def iou_of(p):
        pb, g = p[0] > 0.5, gt[0, 0] > 0.5
        return 100.0 * float((pb & g).sum()) / float((pb | g).sum())

    assert m.per_image[0]["iou"] == pytest.approx(iou_of(official), abs=1e-9)
    assert abs(iou_of(plain) - iou_of(official)) > 1e-3


def test_real_images_reported_apart():
    gt_fake = _square(32, 0, 16, 0, 32)             # top half
    pred_fake = _square(32, 0, 16, 0, 32)           # perfect
    pred_real1 = _square(32, 0, 16, 0, 16)          # a quarter of the pixels predicted
    pred_real2 = torch.zeros(32, 32)
    pred_real3 = torch.ones(32, 32)                 # labelled real although its GT is not empty
    logits = torch.stack([_logits_from_mask(p) for p in
                          (pred_fake, pred_real1, pred_real2, pred_real3)])[:, None]
    gts = torch.stack([gt_fake, torch.zeros(32, 32), torch.zeros(32, 32), gt_fake])[:, None]
    m = LocalizationMetrics()
    m.update(logits, gts, label=torch.tensor([1, 0, 1, 0]), names=["f", "r1", "r2", "r3"])
    r = m.compute()
    assert r["n_manipulated"] == 1 and r["n_empty_gt"] == 3
    assert r["iou"] == pytest.approx(100.0)  # the real images are not averaged in as zeros
    assert r["empty_gt_fp_rate"] == pytest.approx((0.25 + 0.0 + 1.0) / 3)
    rows = m.per_image
    assert [row["name"] for row in rows] == ["f", "r1", "r2", "r3"]
    assert rows[0]["fp_rate"] is None and rows[0]["iou"] == pytest.approx(100.0)
    assert rows[1]["iou"] is None and rows[1]["fp_rate"] == pytest.approx(0.25)
    assert set(rows[0]) == {"name", "iou", "f1", "f1_best", "pixel_ap", "pixel_auc", "fp_rate"}


def test_no_images_gives_nan():
    r = LocalizationMetrics().compute()
    assert r["n_manipulated"] == 0 and r["n_empty_gt"] == 0
    for k in ("iou", "f1", "f1_best", "pixel_ap", "pixel_auc", "empty_gt_fp_rate"):
        assert math.isnan(r[k])


def test_pixel_auc_undefined_for_all_ones_gt():
    m = LocalizationMetrics()
    logits = torch.randn(2, 1, 16, 16)
    gt = torch.ones(2, 1, 16, 16)
    gt[1, 0, :4] = 0
    m.update(logits, gt)
    rows = m.per_image
    assert rows[0]["pixel_auc"] is None and rows[0]["pixel_ap"] == pytest.approx(1.0)
    assert rows[1]["pixel_auc"] is not None
    r = m.compute()
    assert r["n_pixel_auc_undefined"] == 1
    assert r["pixel_auc"] == pytest.approx(rows[1]["pixel_auc"])


@pytest.mark.parametrize("seed", range(3))
def test_pixel_ap_auc_f1_best_match_references(seed):
    rng = np.random.default_rng(seed)
    size = 40
    gts = np.stack([_blob_gt(rng, size) for _ in range(4)])
    # quantized logits: many ties
    logits = np.round(rng.normal(0, 1.5, gts.shape) + 2.0 * gts, 0).astype(np.float32)
    m = LocalizationMetrics(max_elements=2 * size * size)  # forces chunking over rows
    m.update(torch.tensor(logits)[:, None], torch.tensor(gts, dtype=torch.float32)[:, None])
    probs = torch.sigmoid(torch.tensor(logits)).numpy()
    for i, rec in enumerate(m.per_image):
        p, g = probs[i].ravel(), gts[i].ravel().astype(int)
        assert rec["pixel_ap"] == pytest.approx(average_precision_score(g, p), abs=1e-9)
        assert rec["pixel_auc"] == pytest.approx(roc_auc_score(g, p), abs=1e-9)
        assert rec["f1_best"] == pytest.approx(_brute_best_f1(probs[i], gts[i]), abs=1e-12)
    # module-level functions agree with the accumulator
    tp = torch.tensor(probs)
    tg = torch.tensor(gts)
    np.testing.assert_allclose(loc.pixel_average_precision(tp, tg).numpy(),
                               [r["pixel_ap"] for r in m.per_image])
    np.testing.assert_allclose(loc.pixel_roc_auc(tp, tg).numpy(),
                               [r["pixel_auc"] for r in m.per_image])
    np.testing.assert_allclose(loc.best_threshold_f1(tp, tg).numpy(),
                               [r["f1_best"] for r in m.per_image])
    assert loc.best_threshold_f1(tp[0], tg[0]) == pytest.approx(m.per_image[0]["f1_best"])


def test_batch_of_256_masks_matches_single_images():
    torch.manual_seed(1)
    gt = (F.avg_pool2d(torch.rand(3, 1, 256, 256), 31, 1, 15) > 0.5).float()
    logits = torch.randn(3, 1, 256, 256) + 3 * (gt - 0.5)
    batched = LocalizationMetrics()
    batched.update(logits, gt)
    single = LocalizationMetrics()
    for i in range(3):
        single.update(logits[i:i + 1], gt[i:i + 1])
    for a, b in zip(batched.per_image, single.per_image):
        for k in a:
            assert a[k] == pytest.approx(b[k], abs=1e-12), k


def _make_batches(seed, n_batches=4, bs=3, size=32):
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(n_batches):
        gt = (F.avg_pool2d(torch.rand(bs, 1, size, size, generator=g), 7, 1, 3) > 0.52).float()
        gt[0] = 0  # one real image per batch
        logits = torch.randn(bs, 1, size // 2, size // 2, generator=g)
        out.append((logits, gt, [f"b{b}_{i}" for i in range(bs)]))
    return out


def _assert_same(r1, r2):
    assert r1.keys() == r2.keys()
    for k in r1:
        if isinstance(r1[k], float) and math.isnan(r1[k]):
            assert math.isnan(r2[k])
        else:
            assert r2[k] == pytest.approx(r1[k], abs=1e-12), k


def test_accumulation_and_merge_equal_one_pass():
    batches = _make_batches(0)
    one = LocalizationMetrics()
    one.update(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]),
               names=sum([b[2] for b in batches], []))
    many = LocalizationMetrics()
    for lg, gt, names in batches:
        many.update(lg, gt, names=names)
    _assert_same(one.compute(), many.compute())
    assert one.per_image == many.per_image

    a, b = LocalizationMetrics(), LocalizationMetrics()
    for lg, gt, names in batches[:1]:
        a.update(lg, gt, names=names)
    for lg, gt, names in batches[1:]:
        b.update(lg, gt, names=names)
    _assert_same(one.compute(), a.merge(b).compute())
    assert [r["name"] for r in a.per_image] == [r["name"] for r in one.per_image]

    a2, b2 = LocalizationMetrics(), LocalizationMetrics()
    for lg, gt, names in batches[:2]:
        a2.update(lg, gt, names=names)
    for lg, gt, names in batches[2:]:
        b2.update(lg, gt, names=names)
    states = pickle.loads(pickle.dumps([a2.state(), b2.state()]))
    gathered = LocalizationMetrics.from_state(states[0]).merge(
        LocalizationMetrics.from_state(states[1]))
    _assert_same(one.compute(), gathered.compute())
    assert gathered.per_image == one.per_image
    assert one.compute()["n_empty_gt"] == 4


def test_merge_rejects_different_settings():
    with pytest.raises(ValueError):
        LocalizationMetrics().merge(LocalizationMetrics(threshold=0.3))
    with pytest.raises(ValueError):
        LocalizationMetrics(erode=14)


def test_keys():
    m = LocalizationMetrics()
    m.update(torch.randn(1, 1, 8, 8), torch.ones(1, 1, 8, 8))
    assert set(m.compute()) == {"iou", "f1", "f1_best", "pixel_ap", "pixel_auc", "n_manipulated",
                                "empty_gt_fp_rate", "n_empty_gt", "n_pixel_auc_undefined",
                                "n_f1_best_unbanded", "n_fake_no_mask"}


def test_fake_without_mask_is_left_out_not_scored_as_real():
    """mask_valid False on a fake: no localization score, counted, and not in empty_gt_fp_rate."""
    logits = torch.full((3, 1, 8, 8), -5.0)
    logits[2] = 5.0  # the maskless fake is predicted fully manipulated
    gt = torch.zeros(3, 1, 8, 8)
    gt[0, :, :4] = 1.0
    logits[0, :, :4] = 5.0
    m = LocalizationMetrics()
    m.update(logits, gt, label=torch.tensor([1, 0, 1]), valid=torch.tensor([True, True, False]))
    r = m.compute()
    assert r["n_manipulated"] == 1 and r["n_empty_gt"] == 1 and r["n_fake_no_mask"] == 1
    assert r["iou"] == pytest.approx(100.0)
    assert r["empty_gt_fp_rate"] == pytest.approx(0.0)  # would be 1/2 if the maskless fake counted as real
