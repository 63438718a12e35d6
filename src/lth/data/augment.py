"""Standard CIFAR augmentation on a whole batch at once: random flip, pad and random crop."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lth.data.transfer import to_device


def augment_batch(
    x: torch.Tensor, generator: torch.Generator, *, flip: bool = True, pad: int = 4
) -> torch.Tensor:
    """Randomly flip each image of `x` (N×C×H×W) left-right, zero-pad it by `pad` and crop H×W back out.

    Image n becomes `crop(pad(flip?(x[n])), top=oy[n], left=ox[n])` with `oy, ox` uniform in
    0..2·pad, i.e. a shift of up to `pad` pixels each way. The padding is 0, which after
    normalisation is the data set's mean colour. The random draws come from `generator` (in this
    order: N flip coins, N row offsets, N column offsets), so the result is a function of `x` and
    the generator's state alone; the generator may live on the CPU while `x` lives on a GPU.
    All images are shifted and flipped by one gather, with no per-image Python.
    """
    if x.dim() != 4:
        raise ValueError(f"augment_batch expects an N×C×H×W batch, got shape {tuple(x.shape)}")
    if pad < 0:
        raise ValueError(f"pad must be 0 or more, got {pad}")
    n, c, h, w = x.shape
    draw = generator.device
    flips = (
        torch.rand(n, generator=generator, device=draw) < 0.5
        if flip
        else torch.zeros(n, dtype=torch.bool, device=draw)
    )
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=draw)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=draw)
    # One copy for the three draws (see `to_device`: on a GPU the host never waits for it).
    flips, oy, ox = to_device(torch.stack([flips.long(), oy, ox]), x.device)
    flips = flips.bool()

    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    rows = oy[:, None] + torch.arange(h, device=x.device)  # N×H: source row of each output row
    cols = ox[:, None] + torch.arange(w, device=x.device)  # N×W: source column of each output column
    # Flipping before the crop reads column j of the flipped padded image from column W'−1−j.
    cols = torch.where(flips[:, None], padded.shape[3] - 1 - cols, cols)
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, padded.shape[3]))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))
