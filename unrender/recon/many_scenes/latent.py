"""Latent mode (IG-AE's idea): scenes render small latent images that a shared autoencoder decodes to RGB.

A convolutional autoencoder, trained by the project on the collection's training images (composited over white),
maps an image ``I [3,H,W]`` to a latent image ``z = E(I) [C,H/f,W/f]`` (``tanh``-bounded) and back,
``D(z) ~ I``. In latent mode a scene's decoder outputs ``C`` latent channels (``tanh``) instead of RGB and each
step renders whole latent views at ``1/f`` of the resolution (``f^2`` times fewer rays per view), with the loss

    L = |D(z_render) - I|^2 + lambda_z |z_render - E(I)|^2 + lambda_o |O - pool_f(alpha)|^2 + lambda_tv TV

(the RGB-space loss through the frozen decoder, plus the latent loss); the background is the latent of a white
image. Test views are rendered in latent space and decoded.

Example:
    >>> ae = LatentAutoencoder(channels=4, factor=4, width=8)
    >>> z = ae.encode(torch.rand(2, 3, 32, 32)); z.shape, ae.decode(z).shape
    (torch.Size([2, 4, 8, 8]), torch.Size([2, 3, 32, 32]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ...cameras import Camera
from ...errors import InputError
from ...schedules import cosine_decay


class LatentAutoencoder(nn.Module):
    """Images ``[B,3,H,W]`` in [0,1] <-> latents ``[B,C,H/f,W/f]`` in (-1,1); ``f`` a power of two.

    Decoded images are not clamped to [0, 1]; callers clamp what they show."""

    def __init__(self, channels: int = 4, factor: int = 4, width: int = 32):
        super().__init__()
        levels = int(round(math.log2(factor)))
        if factor < 1 or 2 ** levels != factor:
            raise InputError(f"latent.factor must be a power of two; got {factor}.")
        self.factor = factor
        enc = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
        for _ in range(levels):
            enc += [nn.Conv2d(width, width, 4, stride=2, padding=1), nn.ReLU()]
        self.encoder = nn.Sequential(*enc, nn.Conv2d(width, channels, 1))
        dec = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        for _ in range(levels):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        self.decoder = nn.Sequential(*dec, nn.Conv2d(width, 3, 3, padding=1))
        self.register_buffer("white_latent", torch.zeros(channels))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.encoder(images))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images (not clamped: a sigmoid here saturates on the mostly-white images and stops learning)."""
        return self.decoder(latents)

    @torch.no_grad()
    def set_white_latent(self, size: int) -> None:
        """The background latent: the mean latent of a white ``size x size`` image."""
        white = torch.ones(1, 3, size, size, device=self.white_latent.device)
        self.white_latent.copy_(self.encode(white).mean(dim=(0, 2, 3)))


def train_autoencoder(ae: LatentAutoencoder, images: torch.Tensor, steps: int, lr: float, batch: int,
                      generator: torch.Generator, average_grads=None) -> float:
    """Fit ``ae`` to ``images [N,3,H,W]`` (over white) with ``|D(E(I)) - I|^2``; returns its PSNR on them.

    ``average_grads(params)`` (multi-process runs) averages the gradients across ranks before each step.
    """
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    device = next(ae.parameters()).device
    for step in range(steps):
        for group in opt.param_groups:   # cosine decay to 10 %
            group["lr"] = lr * cosine_decay(step / max(steps, 1), 0.1)
        idx = torch.randint(images.shape[0], (min(batch, images.shape[0]),), generator=generator)
        target = images[idx].to(device)
        mse = (ae.decode(ae.encode(target)) - target).square().mean()
        opt.zero_grad(set_to_none=True)
        mse.backward()
        if average_grads is not None:
            average_grads(list(ae.parameters()))
        opt.step()
    ae.set_white_latent(images.shape[-1])
    with torch.no_grad():
        err = sum(float((ae.decode(ae.encode(x)).clamp(0, 1) - x).square().sum())
                  for x in (images[i:i + 64].to(device) for i in range(0, len(images), 64)))
    return -10 * math.log10(max(err / images.numel(), 1e-10))


def latent_camera(camera: Camera, factor: int) -> Camera:
    """``camera`` at ``1/factor`` of the resolution: pixel ``(i + 0.5)`` is the centre of a ``factor^2`` block."""
    if camera.width % factor or camera.height % factor:
        raise InputError(f"images of {camera.width}x{camera.height} pixels do not split into {factor}x{factor} "
                         f"latent pixels; choose a latent.factor that divides the image size.")
    return replace(camera, fx=camera.fx / factor, fy=camera.fy / factor, cx=camera.cx / factor,
                   cy=camera.cy / factor, width=camera.width // factor, height=camera.height // factor)


@dataclass
class LatentViews:
    """One scene's training views for latent mode (``V`` views, latent size ``h x w``, image size ``H x W``).

    Attributes:
        origins, directions: ``[V,h*w,3]`` rays through the latent pixels' centres.
        rgb: ``[V,3,H,W]`` target images over white.
        latent: ``[V,C,h,w]`` their encodings ``E(I)``, or None when the autoencoder trains with the scenes
            (the loss then encodes each step's targets itself; stored ones would go stale).
        alpha: ``[V,h*w,1]`` mask coverage of every latent pixel.
        box: ``[2,3]`` scene box.
    """

    origins: torch.Tensor
    directions: torch.Tensor
    rgb: torch.Tensor
    latent: torch.Tensor | None
    alpha: torch.Tensor
    box: torch.Tensor


@torch.no_grad()
def latent_views(rgba: torch.Tensor, camera: Camera, box: torch.Tensor, ae: LatentAutoencoder,
                 encode: bool = True) -> LatentViews:
    """:class:`LatentViews` of ``rgba [V,H,W,4]`` (straight sRGB + alpha) seen by ``camera``; ``encode=False``
    leaves ``latent`` None."""
    f = ae.factor
    low = latent_camera(camera, f)
    origins, directions = low.rays()
    rgb = (rgba[..., :3] * rgba[..., 3:] + 1 - rgba[..., 3:]).permute(0, 3, 1, 2).contiguous()
    device = ae.white_latent.device
    latent = (torch.cat([ae.encode(rgb[i:i + 64].to(device)).cpu() for i in range(0, len(rgb), 64)])
              if encode else None)
    alpha = F.avg_pool2d(rgba[..., 3][:, None], f)                                    # [V,1,h,w]
    v = rgba.shape[0]
    return LatentViews(origins.reshape(v, -1, 3).float(), directions.reshape(v, -1, 3).float(), rgb, latent,
                       alpha.reshape(v, -1, 1), box)


def latent_loss(render, ae: LatentAutoencoder, views: list[LatentViews], count: int, latent_weight: float,
                opacity_weight: float, generator: torch.Generator,
                joint: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The latent-mode data terms (module docstring) for ``count`` random views of each scene.

    ``render(origins [S,B,3], directions [S,B,3], boxes [S,2,3]) -> (latent [S,B,C], opacity [S,B,1])`` renders
    the scenes. With ``joint`` the autoencoder is being trained too (IG-AE): the target latents are encoded
    now, with gradients, instead of read from ``views`` (whose ``latent`` may be None), and ``|D(E(I)) - I|^2``
    is added.
    Returns ``(loss, rgb mse)``.
    """
    device = ae.white_latent.device
    picks = [torch.randint(v.rgb.shape[0], (count,), generator=generator) for v in views]
    o = torch.stack([v.origins[i].reshape(-1, 3) for v, i in zip(views, picks)]).to(device)
    d = torch.stack([v.directions[i].reshape(-1, 3) for v, i in zip(views, picks)]).to(device)
    boxes = torch.stack([v.box for v in views]).to(device)
    z, opacity = render(o, d, boxes)
    s = len(views)
    h, w = (n // ae.factor for n in views[0].rgb.shape[2:])
    z_img = z.reshape(s * count, h, w, z.shape[-1]).permute(0, 3, 1, 2)
    target_rgb = torch.cat([v.rgb[i] for v, i in zip(views, picks)]).to(device)
    if joint:
        target_z = ae.encode(target_rgb)
    else:
        target_z = torch.cat([v.latent[i] for v, i in zip(views, picks)]).to(device)
    target_a = torch.stack([v.alpha[i].reshape(-1, 1) for v, i in zip(views, picks)]).to(device)
    rgb_mse = (ae.decode(z_img) - target_rgb).square().mean()
    loss = (rgb_mse + latent_weight * (z_img - target_z).square().mean()
            + opacity_weight * (opacity - target_a).square().mean())
    if joint:
        loss = loss + (ae.decode(target_z) - target_rgb).square().mean()
    return loss, rgb_mse
