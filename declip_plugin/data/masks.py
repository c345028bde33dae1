"""Ground-truth mask layouts: the one rule every part of the package uses.

Batches reach us in several layouts: our loader gives (B, 1, H, W); DeepfakeBench's rgb loader
(B, H, W, 1); its LMDB loader decodes masks in colour, (B, H, W, 1, 3) or (B, H, W, 3); a video
batch carries a mask per frame, (B, T, 1, H, W) or (B, T, H, W, 1). :func:`mask_to_nchw` turns any
of them into a float (N, 1, H, W) tensor in [0, 1] (N = B, or B*T for video), 1 = manipulated.
"""
import torch

from ..errors import DataError

LAYOUTS = "(H,W), (B,H,W), (B,1,H,W), (B,H,W,1), (B,H,W,3), (B,H,W,1,3), (B,T,1,H,W) or (B,T,H,W,1)"


def mask_to_nchw(mask, batch=None):
    """``mask`` in any layout of :data:`LAYOUTS` as float (N, 1, H, W) in [0, 1].

    Colour masks are averaged over their channels; integer masks with values above 1 are read as
    0-255. ``batch``, when given, is the number of images the masks must cover (B, or B*T)."""
    m = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(mask)
    shape = tuple(m.shape)
    if m.dim() == 2:
        m = m[None, None]
    elif m.dim() == 3:
        m = m.unsqueeze(1)
    elif m.dim() == 4:
        if m.shape[1] == 1:
            pass
        elif m.shape[-1] in (1, 3):
            m = m.movedim(-1, 1)
        else:
            raise DataError(f"ground-truth mask of shape {shape}: expected one of {LAYOUTS}")
    elif m.dim() == 5:
        if m.shape[-1] == 3 and m.shape[-2] == 1:  # LMDB colour: (B, H, W, 1, 3)
            m = m[..., 0, :].movedim(-1, 1)
        elif m.shape[2] == 1:  # video: (B, T, 1, H, W)
            m = m.flatten(0, 1)
        elif m.shape[-1] == 1:  # video, channels last: (B, T, H, W, 1)
            m = m.flatten(0, 1).movedim(-1, 1)
        else:
            raise DataError(f"ground-truth mask of shape {shape}: expected one of {LAYOUTS}")
    else:
        raise DataError(f"ground-truth mask of shape {shape}: expected one of {LAYOUTS}")
    if m.shape[1] == 3:
        m = m.float().mean(1, keepdim=True)
    if m.dtype == torch.bool:
        m = m.float()
    elif not torch.is_floating_point(m):
        m = m.float()
        if m.numel() and float(m.max()) > 1:
            m = m / 255.0
    if batch is not None and m.shape[0] != batch:
        raise DataError(f"ground-truth mask of shape {shape} does not fit a batch of {batch} images")
    return m.float()
