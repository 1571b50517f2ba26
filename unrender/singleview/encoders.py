"""A small ResNet-style image encoder for single-view reconstruction (no torchvision).

    images [B,C,H,W] (C = 3 or 4)  ->  (+ 2 coordinate channels x, y in [-1, 1])
    stem:    conv3x3 stride 2 -> GroupNorm -> ReLU                         [B,w0,H/2,W/2]
    stage 0: residual block, stride 1                                      [B,w0,H/2,W/2]   pyramid[0]
    stage i: residual block, stride 2 (i = 1..n-1)                         [B,wi,H/2^(i+1),W/2^(i+1)]  pyramid[i]
    global:  ReLU(Linear(avg-pool ++ max-pool of the last stage))          [B,D]

A residual block is ``y = ReLU(GN(conv3x3(ReLU(GN(conv3x3_s(x))))) + shortcut(x))`` with a strided 1x1
conv + GN shortcut when the shape changes (He et al. 2016). GroupNorm rather than BatchNorm because the
models are trained with small batches and used on one image at a time, and it behaves the same in
``train()`` and ``eval()``. The coordinate channels (Liu et al. 2018, CoordConv) give every filter direct
access to *where* it is in the image, which a pooled plain CNN only recovers indirectly (from padding);
both single-view models need it (object position and extent).

Example:
    >>> enc = ImageEncoder(in_channels=4)
    >>> out = enc(torch.rand(2, 4, 64, 64))
    >>> out.global_feature.shape, [tuple(f.shape[1:]) for f in out.pyramid]
    (torch.Size([2, 256]), [(16, 32, 32), (32, 16, 16), (64, 8, 8), (128, 4, 4), (256, 2, 2)])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..checks import float_tensor
from ..errors import InputError

# Narrow at high resolution, wide at low: about 1.4M parameters and 16 ms per 16 images of 64^2 forward on
# one CPU core (the same parameter count with (32, 64, 128, 256) costs 2.5x the time).
DEFAULT_WIDTHS = (16, 32, 64, 128, 256)


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups of at least 4 channels each."""
    groups = max(1, min(8, channels // 4))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels)


class ResidualBlock(nn.Module):
    """Basic residual block ``y = ReLU(GN(conv(ReLU(GN(conv_s(x))))) + shortcut(x))`` (module docstring).

    Args:
        in_channels, out_channels: channel counts.
        stride: 1 or 2; 2 halves the spatial size.

    Example:
        >>> ResidualBlock(8, 16, stride=2)(torch.rand(1, 8, 10, 10)).shape
        torch.Size([1, 16, 5, 5])
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.norm1 = _group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm2 = _group_norm(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          _group_norm(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B,Cin,H,W] -> [B,Cout,H/stride,W/stride]``."""
        y = torch.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


@dataclass
class EncoderOutput:
    """What :class:`ImageEncoder` returns.

    Attributes:
        global_feature: ``[B,D]`` one vector per image (non-negative, after a ReLU).
        pyramid: feature maps ``[B,C_i,H_i,W_i]``, finest first; ``H_i = H / 2^(i+1)``. Sample them with
            ``grid_sample`` at image coordinates for pixel-aligned local features.
    """

    global_feature: torch.Tensor
    pyramid: list[torch.Tensor]


def prepare_images(images, in_channels: int) -> torch.Tensor:
    """Check ``images[B,C,H,W]`` and bring them to ``in_channels`` channels.

    RGB images given to a 4-channel (RGBA) model get an alpha of 1 everywhere ("no mask known");
    RGBA images given to a 3-channel model are refused, since dropping the mask silently would hide a
    mismatch between the data and the model.

    Example:
        >>> prepare_images(torch.zeros(1, 3, 16, 16), 4)[0, 3].mean().item()
        1.0
    """
    images = float_tensor("images", images, "[B,C,H,W] with C = 3 or 4", ndims=(4,))
    c = images.shape[1]
    if c not in (3, 4):
        hint = " (channels last? use images.permute(0, 3, 1, 2))" if images.shape[-1] in (3, 4) else ""
        raise InputError(f"images must have shape [B,C,H,W] with C = 3 (RGB) or 4 (RGBA); got "
                         f"{tuple(images.shape)}{hint}.")
    if min(images.shape[2:]) < 16:
        raise InputError(f"images must be at least 16x16 pixels; got {images.shape[2]}x{images.shape[3]}.")
    if c == in_channels:
        return images
    if c == 3 and in_channels == 4:
        return torch.cat([images, torch.ones_like(images[:, :1])], 1)
    raise InputError(f"this model takes {in_channels}-channel images but got {c} channels; build it with "
                     f"in_channels={c} or give {in_channels}-channel images.")


def coordinate_channels(batch: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """``[B,2,H,W]`` pixel-centre coordinates ``(x, y)`` in ``[-1, 1]``, x to the right, y down (image rows)."""
    ys = (torch.arange(height, dtype=like.dtype, device=like.device) + 0.5) * (2.0 / height) - 1.0
    xs = (torch.arange(width, dtype=like.dtype, device=like.device) + 0.5) * (2.0 / width) - 1.0
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), 0)
    return grid[None].expand(batch, -1, -1, -1)


class ImageEncoder(nn.Module):
    """ResNet-style CNN: images -> global feature vector + feature pyramid (see the module docstring).

    Args:
        in_channels: 3 (RGB) or 4 (RGBA, alpha = mask); RGB input to a 4-channel encoder gets alpha = 1.
        widths: channels of the stages; ``len(widths)`` pyramid levels, each half the previous size.
        feature_dim: size D of the global feature.
        blocks_per_stage: residual blocks per stage (the first one of stages >= 1 has stride 2).

    Example:
        >>> enc = ImageEncoder(in_channels=3, widths=(16, 32), feature_dim=64)
        >>> enc(torch.rand(1, 3, 32, 32)).global_feature.shape
        torch.Size([1, 64])
    """

    def __init__(self, in_channels: int = 4, widths: tuple[int, ...] = DEFAULT_WIDTHS, feature_dim: int = 256,
                 blocks_per_stage: int = 1):
        super().__init__()
        if in_channels not in (3, 4):
            raise InputError(f"in_channels must be 3 (RGB) or 4 (RGBA); got {in_channels}.")
        if len(widths) < 1 or min(widths) < 4 or feature_dim < 1 or blocks_per_stage < 1:
            raise InputError("widths must be a non-empty tuple of channel counts >= 4, and feature_dim and "
                             f"blocks_per_stage positive; got widths={widths}, feature_dim={feature_dim}, "
                             f"blocks_per_stage={blocks_per_stage}.")
        self.in_channels = int(in_channels)
        self.widths = tuple(int(w) for w in widths)
        self.feature_dim = int(feature_dim)
        self.stem = nn.Sequential(nn.Conv2d(self.in_channels + 2, self.widths[0], 3, 2, 1, bias=False),
                                  _group_norm(self.widths[0]), nn.ReLU())
        stages, prev = [], self.widths[0]
        for i, w in enumerate(self.widths):
            blocks = [ResidualBlock(prev, w, stride=1 if i == 0 else 2)]
            blocks += [ResidualBlock(w, w) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            prev = w
        self.stages = nn.ModuleList(stages)
        self.global_head = nn.Linear(2 * prev, self.feature_dim)

    @property
    def pyramid_channels(self) -> tuple[int, ...]:
        """Channels ``C_i`` of the pyramid levels, finest first."""
        return self.widths

    def forward(self, images) -> EncoderOutput:
        """``images[B,C,H,W]`` (linear RGB(A) in [0, 1]) -> :class:`EncoderOutput`."""
        x = prepare_images(images, self.in_channels)
        if x.dtype != self.global_head.weight.dtype:
            x = x.to(self.global_head.weight.dtype)
        b, _, h, w = x.shape
        x = self.stem(torch.cat([x, coordinate_channels(b, h, w, x)], 1))
        pyramid = []
        for stage in self.stages:
            x = stage(x)
            pyramid.append(x)
        pooled = torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)
        return EncoderOutput(torch.relu(self.global_head(pooled)), pyramid)


def sample_pyramid(pyramid: list[torch.Tensor], image_coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample every pyramid level at ``image_coords[B,Q,2]`` and concatenate -> ``[B,Q,sum C_i]``.

    ``image_coords`` are ``grid_sample`` coordinates: ``(x, y)`` in ``[-1, 1]`` from the left/top edge to the
    right/bottom edge of the image (``align_corners=False``), so the same point addresses the same image
    location on every level; outside the image the features are zero (padding). Differentiable w.r.t. the
    features and the coordinates.

    Example:
        >>> feats = [torch.ones(1, 2, 8, 8), torch.ones(1, 3, 4, 4)]
        >>> sample_pyramid(feats, torch.zeros(1, 5, 2)).shape
        torch.Size([1, 5, 5])
    """
    grid = image_coords[:, :, None, :]  # [B,Q,1,2]
    out = [nn.functional.grid_sample(f, grid.to(f.dtype), mode="bilinear", padding_mode="zeros",
                                     align_corners=False)[..., 0] for f in pyramid]  # [B,C,Q]
    return torch.cat(out, 1).transpose(1, 2)
