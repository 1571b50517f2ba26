"""Tri-plane scenes that share parts (Fused-Planes) or not (independent tri-planes), and how they render.

Two representations, one decoder:

* ``shared`` (Scaled Inverse Graphics / Fused-Planes): scene ``s`` owns micro planes ``M_s`` (``Cm``
  channels) and weights ``w_s`` (``K`` numbers); its macro planes are a weighted sum of ``K`` shared base
  tri-planes ``B_k`` (``Cb`` channels). Its tri-plane is the channel concatenation::

      T_s = [ M_s ; sum_k w_sk B_k ]                    ([3, Cm + Cb, R, R])

  so a scene stores ``3 Cm R^2 + K`` numbers instead of ``3 (Cm + Cb) R^2``.
* ``independent``: scene ``s`` owns the whole ``T_s`` (the baseline).

A small shared MLP decodes the tri-plane feature ``f(p)`` (:func:`unrender.geometry.triplane.sample_triplanes`)
to density ``sigma = exp(x_0)`` (truncated: NGP's ``trunc_exp``) and colour ``c = sigmoid(x_1..3)``, which
are composited along rays (:mod:`unrender.render.volume`) over a white background.

Example:
    >>> from unrender.recon.many_scenes.config import preset
    >>> cfg = preset("fast")
    >>> shared = SharedParts(cfg); scene = SceneParams(cfg)
    >>> scene_planes(shared, [scene]).shape
    torch.Size([1, 3, 16, 32, 32])
"""

from __future__ import annotations

import torch
from torch import nn

from ...geometry.triplane import sample_triplanes
from ...render.volume import alpha_from_density, composite, ray_box_intersection, stratified_edges
from .config import ManyScenesConfig
from .latent import LatentAutoencoder

#: The tri-planes are sampled in the scene box mapped to [-1, 1]^3.
UNIT_BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
#: Initial scale of plane features; small, so the first renders are near-empty.
PLANE_INIT_STD = 0.1


class _TruncExp(torch.autograd.Function):
    """``exp(x)`` whose gradient is clamped at ``x = 15`` (NGP's density activation, stable in float32)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


class TriPlaneDecoder(nn.Module):
    """Shared MLP: feature ``[..., C]`` -> (density ``[..., 1]`` >= 0, colour ``[..., 3]`` in (0, 1)), or with
    ``latent_channels`` a latent ``[..., L]`` in (-1, 1) instead of the colour."""

    def __init__(self, channels: int, hidden: int, latent_channels: int = 0):
        super().__init__()
        self.latent = latent_channels > 0
        out = 1 + (latent_channels if self.latent else 3)
        self.net = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, out))
        with torch.no_grad():   # start near-transparent: sigma = exp(-1)
            self.net[-1].bias.zero_()
            self.net[-1].bias[0] = -1.0

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(features)
        value = torch.tanh(out[..., 1:]) if self.latent else torch.sigmoid(out[..., 1:])
        return _TruncExp.apply(out[..., :1].clamp(max=30.0)), value


def plane_channels(cfg: ManyScenesConfig) -> int:
    """Channels every scene's tri-plane decodes: ``micro_channels + macro_channels``."""
    return cfg.triplane.micro_channels + cfg.triplane.macro_channels


def uses_bases(representation: str) -> bool:
    """``shared`` and ``latent`` scenes are micro planes + weighted shared bases; ``independent`` ones are not."""
    return representation in ("shared", "latent")


class SharedParts(nn.Module):
    """What all scenes share: the decoder; for ``shared``/``latent`` the base planes ``[K,3,Cb,R,R]``; for
    ``latent`` the autoencoder (:mod:`unrender.recon.many_scenes.latent`)."""

    def __init__(self, cfg: ManyScenesConfig):
        super().__init__()
        t = cfg.triplane
        self.representation = cfg.representation
        latent = cfg.representation == "latent"
        self.decoder = TriPlaneDecoder(plane_channels(cfg), t.hidden, cfg.latent.channels if latent else 0)
        if uses_bases(cfg.representation):
            self.bases = nn.Parameter(torch.randn(t.bases, 3, t.macro_channels, t.resolution, t.resolution)
                                      * PLANE_INIT_STD)
        else:
            self.register_parameter("bases", None)
        self.autoencoder = (LatentAutoencoder(cfg.latent.channels, cfg.latent.factor, cfg.latent.width)
                            if latent else None)
        #: Stage 1 keeps training the autoencoder with the scenes (``latent.joint_lr > 0``).
        self.joint_autoencoder = latent and cfg.latent.joint_lr > 0

    def autoencoder_training(self) -> bool:
        """Whether the autoencoder learns with the scenes now (stage 1 with ``joint_autoencoder``; stage 2 and
        a frozen stage 1 have switched its gradients off)."""
        return self.joint_autoencoder and any(p.requires_grad for p in self.autoencoder.parameters())

    def trainable(self) -> list[nn.Parameter]:
        """What stage 1 optimises together with the scenes: decoder, bases, and with ``joint_autoencoder`` the
        autoencoder (otherwise it is trained before, then frozen)."""
        joint = list(self.autoencoder.parameters()) if self.joint_autoencoder else []
        return list(self.decoder.parameters()) + ([self.bases] if self.bases is not None else []) + joint

    def background(self) -> torch.Tensor:
        """What empty space composites over: white, or the latent of a white image."""
        if self.autoencoder is not None:
            return self.autoencoder.white_latent
        return torch.ones(3, device=self.decoder.net[0].weight.device)


class SceneParams(nn.Module):
    """One scene's own parameters: ``shared``: ``weights [K]`` + ``micro [3,Cm,R,R]``; ``independent``:
    ``planes [3,Cm+Cb,R,R]``."""

    def __init__(self, cfg: ManyScenesConfig, generator: torch.Generator | None = None):
        super().__init__()
        t = cfg.triplane
        self.representation = cfg.representation
        if uses_bases(cfg.representation):
            self.weights = nn.Parameter(torch.randn(t.bases, generator=generator) / t.bases ** 0.5)
            self.micro = nn.Parameter(torch.randn(3, t.micro_channels, t.resolution, t.resolution,
                                                  generator=generator) * PLANE_INIT_STD)
        else:
            self.planes = nn.Parameter(torch.randn(3, plane_channels(cfg), t.resolution, t.resolution,
                                                   generator=generator) * PLANE_INIT_STD)

    def own_planes(self) -> torch.Tensor:
        """The planes this scene owns (micro or independent), for the TV regulariser."""
        return self.planes if self.representation == "independent" else self.micro

    def parameter_bytes(self) -> int:
        """Bytes of this scene's own parameters (what it adds to a run's storage)."""
        return sum(p.numel() * p.element_size() for p in self.parameters())


def scene_planes(shared: SharedParts, scenes: list[SceneParams]) -> torch.Tensor:
    """Tri-planes ``[S,3,C,R,R]`` of ``scenes`` (module docstring: ``[M_s ; sum_k w_sk B_k]`` or ``T_s``)."""
    if not uses_bases(shared.representation):
        return torch.stack([s.planes for s in scenes])
    weights = torch.stack([s.weights for s in scenes])                       # [S,K]
    macro = torch.einsum("sk,kpcij->spcij", weights, shared.bases)
    return torch.cat([torch.stack([s.micro for s in scenes]), macro], dim=2)


def render_rays(planes: torch.Tensor, decoder: TriPlaneDecoder, origins: torch.Tensor, directions: torch.Tensor,
                boxes: torch.Tensor, samples: int, generator: torch.Generator | None = None, jitter: bool = False,
                background: torch.Tensor | None = None):
    """Volume-render rays of ``S`` scenes through their tri-planes, over a background (default white).

    Samples are stratified between where each ray enters and leaves its scene's box; density and colour
    come from the decoder, ``alpha_i = 1 - exp(-sigma_i delta_i)`` and front-to-back compositing.

    Args:
        planes: ``[S,3,C,R,R]`` tri-planes.
        decoder: the shared :class:`TriPlaneDecoder`.
        origins, directions: ``[S,B,3]`` rays (world units, unit directions).
        boxes: ``[S,2,3]`` scene boxes.
        samples: samples per ray.
        generator, jitter: jittered stratified sampling (training) or interval midpoints.
        background: ``[3]`` (or ``[L]`` for a latent decoder) value behind the scene; default white.
    Returns:
        ``(color [S,B,3] (or latent [S,B,L]), opacity [S,B,1])``.
    """
    s, b, _ = origins.shape
    lo, hi = boxes[:, None, 0], boxes[:, None, 1]                                  # [S,1,3]
    o_unit = 2 * (origins - lo) / (hi - lo) - 1
    d_unit = 2 * directions / (hi - lo)
    near, far = ray_box_intersection(o_unit.reshape(-1, 3), d_unit.reshape(-1, 3), UNIT_BOX.to(origins))
    edges = stratified_edges(near, far, samples, generator=generator, jitter=jitter)  # [S*B,n+1] (world t)
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    points = o_unit.reshape(-1, 1, 3) + mids[..., None] * d_unit.reshape(-1, 1, 3)   # unit-box points
    feats = sample_triplanes(planes, points.reshape(s, -1, 3), UNIT_BOX.to(origins))
    sigma, rgb = decoder(feats)
    alpha = alpha_from_density(sigma.reshape(s * b, samples), edges.diff(dim=-1))
    if background is None:
        background = torch.ones(rgb.shape[-1], dtype=origins.dtype, device=origins.device)
    out = composite(alpha, rgb.reshape(s * b, samples, -1), edges, background=background)
    return out.color.reshape(s, b, -1), out.opacity.reshape(s, b, 1)
