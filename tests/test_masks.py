"""The one ground-truth mask rule (declip_plugin.data.masks) over every layout a loader gives."""
import pytest
import torch

from declip_plugin.data.masks import mask_to_nchw
from declip_plugin.errors import DataError


def _square(b=2, h=8, w=8):
    m = torch.zeros(b, h, w)
    m[1, 2:4, 3:6] = 1.0
    return m


@pytest.mark.parametrize("layout", ["b1hw", "bhw", "bhw1", "bhw3", "bhw13", "u8"])
def test_every_image_layout_gives_the_same_nchw_mask(layout):
    ref = _square()
    m = {"b1hw": ref[:, None], "bhw": ref, "bhw1": ref[..., None], "bhw3": ref[..., None].expand(-1, -1, -1, 3),
         "bhw13": ref[..., None, None].expand(-1, -1, -1, 1, 3), "u8": (ref * 255).to(torch.uint8)[..., None]}[layout]
    out = mask_to_nchw(m)
    assert out.shape == (2, 1, 8, 8) and out.dtype == torch.float32
    assert torch.equal(out[:, 0], ref)


def test_video_masks_flatten_frames_in_order():
    b, t = 2, 3
    m = torch.zeros(b, t, 1, 6, 6)
    m[1, 2, 0, 1, 1] = 1.0
    out = mask_to_nchw(m)
    assert out.shape == (b * t, 1, 6, 6) and out[5, 0, 1, 1] == 1 and out.sum() == 1
    assert torch.equal(mask_to_nchw(m.movedim(2, -1)), out)


def test_bad_shapes_and_batch_mismatch_are_data_errors():
    with pytest.raises(DataError, match="expected one of"):
        mask_to_nchw(torch.zeros(2, 4, 8, 8))
    with pytest.raises(DataError, match="does not fit a batch of 3"):
        mask_to_nchw(torch.zeros(2, 1, 8, 8), batch=3)
