"""LIST-style single-view implicit surface predictor (Arshad & Beksi, ICCV 2023, in spirit): image -> SDF.

    images [B,C,H,W] --encoder--> global feature g [B,D] + feature pyramid
    g --MLP--> coarse point cloud  P [B,Np,3] = b tanh(.)           (trained with Chamfer to surface points)
    g, x --spatial transformer--> image coordinates uv(x) [B,Q,2]    (no camera needed at test time)
    local(x)  = pyramid sampled at uv(x)                             (grid_sample, the 4 finest levels;
                                                                      optionally also the image and a
                                                                      full-resolution conv of it)
    point(x)  = max_k MLP(x - p_k, |x - p_k|) over the k nearest coarse points p_k
    sdf(x)    = |x| - r + MLP(g ++ local(x) ++ point(x) ++ fourier(x))

The spatial transformer predicts, from ``g``, a projective map ``A = A_0 + dA(g)`` ``[3,4]`` with
``(h_1, h_2, h_3) = A (x, 1)`` and ``uv = (h_1, h_2) / max(h_3, 0.1) + r tanh(MLP(fourier(x), g))``; ``A_0``
is an orthographic view down -z that maps ``[-0.6, 0.6]^2`` onto the image, so an untrained transformer
already samples the image where a front view would project. ``uv`` uses ``grid_sample``'s convention
(x right, y down, ``[-1, 1]`` from edge to edge). When the training data has cameras, ``uv`` can be supervised
with the true projection (:func:`implicit_losses` ``cameras=``); it is never needed at test time. Optionally the
transformer reads a separate pose encoder's feature instead of ``g`` (``pose_widths``).

Losses (:func:`implicit_losses`): clamped L1 on the SDF with near-surface samples weighted up (DISN),
Chamfer of the coarse cloud to surface samples, and optionally the transformer's projection error.
:func:`extract_mesh` evaluates the SDF on a grid in chunks and runs marching cubes.

Example:
    >>> model = ImplicitPredictor()
    >>> out = model(torch.rand(2, 4, 64, 64), torch.rand(2, 100, 3) - 0.5)
    >>> out.sdf.shape, out.coarse_points.shape, out.image_coords.shape
    (torch.Size([2, 100]), torch.Size([2, 512, 3]), torch.Size([2, 100, 2]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..cameras import Camera
from ..checks import float_tensor
from ..errors import InputError
from ..geometry.refined_grid import evaluate_chunked, grid_points, refined_sdf_grid
from ..mesh import Mesh
from .encoders import DEFAULT_WIDTHS, ImageEncoder, coordinate_channels, prepare_images, sample_pyramid

# Smallest projective denominator h_3: keeps uv finite when a predicted map puts a point behind its "camera".
_MIN_DEPTH = 0.1


def fourier_features(points: torch.Tensor, frequencies: int) -> torch.Tensor:
    """``[...,3] -> [...,3 + 6F]``: ``(x, sin(2^k pi x), cos(2^k pi x))`` for ``k = 0..F-1``.

    Example:
        >>> fourier_features(torch.zeros(2, 3), 4).shape
        torch.Size([2, 27])
    """
    if frequencies == 0:
        return points
    scales = math.pi * 2.0 ** torch.arange(frequencies, dtype=points.dtype, device=points.device)
    arg = (points[..., None, :] * scales[:, None]).flatten(-2)
    return torch.cat([points, torch.sin(arg), torch.cos(arg)], -1)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SpatialTransformer(nn.Module):
    """Learned camera-free map from canonical points to image coordinates (module docstring).

    Args:
        feature_dim: size D of the global feature.
        hidden_dim: width of the residual MLP.
        frequencies: Fourier frequencies of the point encoding fed to the residual MLP.
        residual_scale: ``r``, bound of the non-projective residual in ``[-1, 1]`` image units.
        extent: half-size of the canonical square that ``A_0`` maps onto the whole image.

    Example:
        >>> st = SpatialTransformer(8)
        >>> st(torch.zeros(1, 8), torch.tensor([[[0.6, 0.6, 0.0]]]))   # untrained: orthographic front view
        tensor([[[ 1., -1.]]], grad_fn=<AddBackward0>)
    """

    def __init__(self, feature_dim: int, hidden_dim: int = 128, frequencies: int = 4,
                 residual_scale: float = 0.1, extent: float = 0.6):
        super().__init__()
        base = torch.zeros(3, 4)
        base[0, 0], base[1, 1], base[2, 3] = 1.0 / extent, -1.0 / extent, 1.0  # image y runs down
        self.register_buffer("base", base)
        self.frequencies = int(frequencies)
        self.residual_scale = float(residual_scale)
        self.matrix_head = nn.Linear(feature_dim, 12)
        self.feature_proj = nn.Linear(feature_dim, 64)
        self.residual = _mlp([3 + 6 * self.frequencies + 64, hidden_dim, hidden_dim, 2])
        for layer in (self.matrix_head, self.residual[-1]):  # start from the plain front view
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def matrix(self, global_feature: torch.Tensor) -> torch.Tensor:
        """The projective part ``A [B,3,4] = A_0 + dA(g)``."""
        return self.base.to(global_feature.dtype) + self.matrix_head(global_feature).reshape(-1, 3, 4)

    def forward(self, global_feature: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """``g[B,D]``, ``points[B,Q,3]`` -> image coordinates ``uv[B,Q,2]`` (grid_sample convention)."""
        a = self.matrix(global_feature)
        h = points @ a[:, :, :3].transpose(1, 2) + a[:, None, :, 3]
        uv = h[..., :2] / h[..., 2:].clamp(min=_MIN_DEPTH)
        g = self.feature_proj(global_feature)[:, None].expand(-1, points.shape[1], -1)
        res = self.residual(torch.cat([fourier_features(points, self.frequencies), g], -1))
        return uv + self.residual_scale * torch.tanh(res)


@dataclass
class ImplicitCode:
    """Per-image part of :class:`ImplicitPredictor`, computed once and queried at many points.

    Attributes:
        global_feature: ``[B,D]``.
        pyramid: encoder feature maps ``[B,C_i,H_i,W_i]``.
        coarse_points: ``[B,Np,3]`` coarse point cloud in the canonical object frame.
        pixel_map: ``[B,C+P,H,W]`` the input image and its full-resolution features, or ``None`` (off).
        pose_feature: ``[B,D_p]`` what the spatial transformer reads: the global feature, or the separate pose
            encoder's feature when the model has one.
    """

    global_feature: torch.Tensor
    pyramid: list[torch.Tensor]
    coarse_points: torch.Tensor
    pixel_map: torch.Tensor | None = None
    pose_feature: torch.Tensor | None = None


@dataclass
class ImplicitOutput:
    """What :meth:`ImplicitPredictor.forward` returns.

    Attributes:
        sdf: ``[B,Q]`` predicted signed distance (negative inside) at the query points.
        coarse_points: ``[B,Np,3]`` coarse point cloud.
        image_coords: ``[B,Q,2]`` where the spatial transformer put each query (grid_sample convention).
        query_points: ``[B,Q,3]`` the queries, canonical object frame.
    """

    sdf: torch.Tensor
    coarse_points: torch.Tensor
    image_coords: torch.Tensor
    query_points: torch.Tensor


class ImplicitPredictor(nn.Module):
    """Image -> signed distance function, LIST-style (module docstring).

    Args:
        in_channels: 3 (RGB) or 4 (RGBA).
        num_coarse_points: ``Np``, points of the coarse cloud.
        k_neighbours: coarse points per query for the point feature.
        widths, feature_dim: encoder stage widths and global feature size.
        hidden_dim: width of the SDF decoder.
        local_levels: finest pyramid levels sampled for local features (the coarsest ones, 2x2 at 64^2, say
            little that the global feature does not, and their many channels dominate the decoder's cost).
        frequencies: Fourier frequencies of the query encoding.
        coarse_bound: ``b``, the coarse cloud lies in ``[-b, b]^3``.
        prior_radius: ``r``: the decoder's output is added to ``|x| - r``, a sphere's SDF (objects have longest
            side 1), so the far field starts positive.
        pixel_channels: ``P``: channels of a full-resolution local feature, ``ReLU(conv3x3(image ++ xy))`` at the
            input's size, sampled at ``uv(x)`` together with the image itself (0: off). The encoder's finest level
            is half the input size, where a part 1-2 pixels wide is blurred into its surroundings.
        pose_widths: stage widths of a separate encoder whose global feature (size ``pose_dim``) drives the
            spatial transformer, or ``None``: the transformer reads the shape encoder's global feature. With a
            weight on the camera loss high enough for the local features to land within a pixel of the true
            projection, a shared encoder gives up shape features to serve the camera.
        pose_dim: size of the pose encoder's feature.

    Example:
        >>> model = ImplicitPredictor(in_channels=3, num_coarse_points=64)
        >>> code = model.encode(torch.rand(1, 3, 64, 64))
        >>> model.query(code, torch.zeros(1, 5, 3))[0].shape
        torch.Size([1, 5])
    """

    def __init__(self, in_channels: int = 4, num_coarse_points: int = 512, k_neighbours: int = 8,
                 widths: tuple[int, ...] = DEFAULT_WIDTHS, feature_dim: int = 256, hidden_dim: int = 256,
                 frequencies: int = 4, coarse_bound: float = 0.6, local_levels: int = 4,
                 prior_radius: float = 0.3, pixel_channels: int = 0, pose_widths: tuple[int, ...] | None = None,
                 pose_dim: int = 128):
        super().__init__()
        if num_coarse_points < 1 or not 1 <= k_neighbours <= num_coarse_points:
            raise InputError(f"need num_coarse_points >= 1 and 1 <= k_neighbours <= num_coarse_points; got "
                             f"{num_coarse_points} and {k_neighbours}.")
        self.encoder = ImageEncoder(in_channels, widths, feature_dim)
        self.num_coarse_points = int(num_coarse_points)
        self.k_neighbours = int(k_neighbours)
        self.frequencies = int(frequencies)
        self.coarse_bound = float(coarse_bound)
        self.coarse_head = _mlp([feature_dim, 512, 3 * self.num_coarse_points])
        self.pose_encoder = None if not pose_widths else ImageEncoder(in_channels, tuple(pose_widths), int(pose_dim))
        self.transformer = SpatialTransformer(feature_dim if self.pose_encoder is None else int(pose_dim),
                                              frequencies=frequencies)
        self.point_mlp = _mlp([4, 32, 64])
        self.local_levels = min(int(local_levels), len(self.encoder.pyramid_channels))
        width = sum(self.encoder.pyramid_channels[:self.local_levels]) + 64 + 3 + 6 * self.frequencies
        self.pixel_conv = None
        if pixel_channels > 0:
            self.pixel_conv = nn.Conv2d(in_channels + 2, int(pixel_channels), 3, 1, 1)
            width += in_channels + int(pixel_channels)
        # First decoder layer split in two: W [g ++ x] = W_g g + W_x x, and W_g g is computed once per image.
        self.decoder_global = nn.Linear(feature_dim, hidden_dim, bias=False)
        self.decoder_input = nn.Linear(width, hidden_dim)
        self.decoder = _mlp([hidden_dim, hidden_dim, hidden_dim // 2, 1])
        self.prior_radius = float(prior_radius)

    def encode(self, images) -> ImplicitCode:
        """``images[B,C,H,W]`` -> :class:`ImplicitCode` (global feature, pyramid, coarse cloud)."""
        enc = self.encoder(images)
        g = enc.global_feature
        coarse = self.coarse_bound * torch.tanh(self.coarse_head(g)).reshape(g.shape[0], -1, 3)
        pixel_map = None
        if self.pixel_conv is not None:
            x = prepare_images(images, self.encoder.in_channels).to(g.dtype)
            xy = coordinate_channels(x.shape[0], x.shape[2], x.shape[3], x)
            pixel_map = torch.cat([x, torch.relu(self.pixel_conv(torch.cat([x, xy], 1)))], 1)
        pose = g if self.pose_encoder is None else self.pose_encoder(images).global_feature
        return ImplicitCode(g, enc.pyramid, coarse, pixel_map, pose)

    def point_features(self, coarse_points: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """``[B,Q,64]``: ``max_k MLP(x - p_k, |x - p_k|)`` over the ``k`` coarse points nearest to each query.

        The coarse cloud is detached here so that only the Chamfer term shapes it (it stays a cloud on the
        surface, which is what makes its neighbours informative); the SDF decoder adapts to it instead.
        """
        coarse = coarse_points.detach()
        with torch.no_grad():
            idx = squared_distances(points, coarse).topk(self.k_neighbours, dim=-1, largest=False).indices
        b, p = coarse.shape[:2]
        offsets = torch.arange(b, device=idx.device).reshape(b, 1, 1) * p
        nbr = coarse.reshape(-1, 3)[idx + offsets]  # [B,Q,k,3]
        rel = points[:, :, None, :] - nbr
        feat = self.point_mlp(torch.cat([rel, rel.norm(dim=-1, keepdim=True)], -1))
        return feat.amax(2)

    def query(self, code: ImplicitCode, points) -> tuple[torch.Tensor, torch.Tensor]:
        """SDF at ``points[B,Q,3]`` (or ``[Q,3]`` for every image) -> ``(sdf[B,Q], image_coords[B,Q,2])``."""
        g = code.global_feature
        points = float_tensor("query_points", points, "[B,Q,3] or [Q,3]", last_dim=3, ndims=(2, 3))
        points = points.to(device=g.device, dtype=g.dtype)
        points = points[None].expand(g.shape[0], -1, -1) if points.dim() == 2 else points
        if points.shape[0] != g.shape[0]:
            raise InputError(f"query_points has batch {points.shape[0]} but there are {g.shape[0]} images.")
        uv = self.transformer(g if code.pose_feature is None else code.pose_feature, points)
        levels = code.pyramid[:self.local_levels]
        local = sample_pyramid(levels if code.pixel_map is None else [code.pixel_map, *levels], uv)
        geo = self.point_features(code.coarse_points, points)
        x = torch.cat([local, geo, fourier_features(points, self.frequencies)], -1)
        hidden = torch.relu(self.decoder_input(x) + self.decoder_global(g)[:, None])
        # The decoder predicts a residual over a sphere's SDF: space that training rarely samples (the corners
        # of the extraction cube) then reads as outside instead of whatever an untrained layer says there.
        prior = points.norm(dim=-1) - self.prior_radius
        return prior + self.decoder(hidden)[..., 0], uv

    def forward(self, images, query_points) -> ImplicitOutput:
        """``images[B,C,H,W]``, ``query_points[B,Q,3]`` -> :class:`ImplicitOutput`."""
        code = self.encode(images)
        sdf, uv = self.query(code, query_points)
        points = query_points if query_points.dim() == 3 else query_points[None].expand(sdf.shape[0], -1, -1)
        return ImplicitOutput(sdf, code.coarse_points, uv, points.to(sdf))


# ----------------------------------------------------------------------------------------------- losses
def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All pairwise ``|a_i - b_j|^2`` ``[B,N,M]`` of ``a[B,N,3]``, ``b[B,M,3]``, as ``|a|^2 - 2 a.b + |b|^2`` (>= 0).

    Example:
        >>> squared_distances(torch.zeros(1, 1, 3), torch.tensor([[[3.0, 4.0, 0.0]]]))
        tensor([[[25.]]])
    """
    a2 = a.square().sum(-1, keepdim=True)
    b2 = b.square().sum(-1)[:, None, :]
    return torch.baddbmm(a2 + b2, a, b.transpose(1, 2), alpha=-2.0).clamp(min=0.0)


def chamfer_loss(a, b) -> torch.Tensor:
    """Squared Chamfer distance ``mean_b [mean_i min_j |a_i - b_j|^2 + mean_j min_i |a_i - b_j|^2]``.

    Args:
        a: ``[B,N,3]``; b: ``[B,M,3]`` (N, M >= 1).

    Example:
        >>> chamfer_loss(torch.zeros(1, 2, 3), torch.tensor([[[0.0, 0, 1]]])).item()
        2.0
    """
    a = float_tensor("a", a, "[B,N,3]", last_dim=3, ndims=(3,))
    b = float_tensor("b", b, "[B,M,3]", last_dim=3, ndims=(3,)).to(a)
    if a.shape[0] != b.shape[0] or a.shape[1] == 0 or b.shape[1] == 0:
        raise InputError(f"chamfer_loss needs non-empty point sets with one batch size; got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}.")
    # Nearest neighbours without gradient, then distances of the matched pairs only: the same value and
    # gradient as differentiating the min over the full [B,N,M] table, at O(N + M) backward cost.
    with torch.no_grad():
        d2 = squared_distances(a, b)
        a_to_b, b_to_a = d2.argmin(2), d2.argmin(1)
    near_b = torch.gather(b, 1, a_to_b[..., None].expand(-1, -1, 3))
    near_a = torch.gather(a, 1, b_to_a[..., None].expand(-1, -1, 3))
    return ((a - near_b).square().sum(-1).mean(1) + (b - near_a).square().sum(-1).mean(1)).mean()


def clamped_l1(pred: torch.Tensor, target: torch.Tensor, delta: float) -> torch.Tensor:
    """Elementwise clamped SDF error: ``|pred - target|`` where ``|target| < delta``, else the distance of ``pred``
    from ``[delta, inf)`` (``target >= delta``) or from ``(-inf, -delta]`` (``target <= -delta``).

    It equals DeepSDF's ``|clamp(pred) - clamp(target)|`` whenever ``|pred| <= delta``, but keeps a gradient
    when a prediction lies beyond the band on the wrong side (clamping ``pred`` would make it 0 there, and a
    decoder that starts far out never recovers).

    Example:
        >>> clamped_l1(torch.tensor([0.5, 0.5, -0.5]), torch.tensor([0.3, -0.3, 0.05]), 0.1)
        tensor([0.0000, 0.6000, 0.5500])
    """
    far_out, far_in = target >= delta, target <= -delta
    err = (pred - target).abs()
    err = torch.where(far_out, torch.relu(delta - pred), err)
    return torch.where(far_in, torch.relu(pred + delta), err)


@dataclass
class ImplicitLossWeights:
    """Weights and settings of :func:`implicit_losses`.

    Attributes:
        sdf: weight of the clamped SDF L1.
        chamfer: weight of the coarse cloud's squared Chamfer distance to the surface samples.
        transformer: weight of the spatial transformer's L1 projection error (only with cameras).
        clamp: ``delta``; predictions and targets are clamped to ``[-delta, delta]`` (DeepSDF) so that capacity
            goes to the region near the surface.
        near_surface_weight: weight of samples with ``|sdf target| < near_surface_band`` relative to the others
            (DISN weights them 4x).
        near_surface_band: see ``near_surface_weight``.
    """

    sdf: float = 1.0
    chamfer: float = 1.0
    transformer: float = 1.0
    clamp: float = 0.1
    near_surface_weight: float = 4.0
    near_surface_band: float = 0.02


def implicit_losses(out: ImplicitOutput, sdf_targets, surface_points=None, cameras: Camera | None = None,
                    weights: ImplicitLossWeights | None = None) -> dict[str, torch.Tensor]:
    """Training losses of :class:`ImplicitPredictor`.

    ``total = w_s L_sdf + w_c L_cd + w_t L_st`` with sample weights ``w_q`` (``near_surface_weight`` near the
    surface, else 1):

    * ``L_sdf = sum_q w_q e_q / sum_q w_q`` with ``e_q`` the clamped L1 of :func:`clamped_l1` at ``delta = clamp``;
    * ``L_cd`` = :func:`chamfer_loss` (coarse cloud, ``surface_points``), 0 when ``surface_points`` is ``None``;
    * ``L_st = mean |uv_q - pi(x_q)|`` (both coordinates) with ``pi`` the true projection of the query into the
      input image by ``cameras`` (grid_sample units), over queries in front of the camera; 0 without cameras.

    Args:
        out: :class:`ImplicitOutput` of ``B`` images and ``Q`` queries.
        sdf_targets: ``[B,Q]`` signed distances (negative inside).
        surface_points: ``[B,S,3]`` samples of the true surface, or ``None``.
        cameras: ``B`` cameras of the input images (canonical frame = world), or ``None``.
        weights: :class:`ImplicitLossWeights` (defaults when ``None``).
    Returns:
        dict of scalars ``"total"``, ``"sdf"``, ``"chamfer"``, ``"transformer"`` (the last two unweighted).

    Example:
        >>> model = ImplicitPredictor(num_coarse_points=64)
        >>> q = torch.rand(1, 50, 3) - 0.5
        >>> losses = implicit_losses(model(torch.rand(1, 4, 64, 64), q), q.norm(dim=-1) - 0.3)
        >>> sorted(losses)
        ['chamfer', 'sdf', 'total', 'transformer']
    """
    weights = ImplicitLossWeights() if weights is None else weights
    pred = out.sdf
    target = float_tensor("sdf_targets", sdf_targets, "[B,Q]", ndims=(2,)).to(pred)
    if target.shape != pred.shape:
        raise InputError(f"sdf_targets {tuple(target.shape)} must match the queries' [B,Q] = {tuple(pred.shape)}.")
    d = float(weights.clamp)
    w = torch.where(target.abs() < weights.near_surface_band, weights.near_surface_weight, 1.0).to(pred)
    sdf = (w * clamped_l1(pred, target, d)).sum() / w.sum().clamp(min=1e-12)
    zero = pred.sum() * 0
    chamfer = zero if surface_points is None else chamfer_loss(out.coarse_points, surface_points)
    transformer = zero
    if cameras is not None:
        if len(cameras) != pred.shape[0]:
            raise InputError(f"cameras must hold one camera per image ({pred.shape[0]}); got {len(cameras)}.")
        cameras = cameras.to(device=pred.device, dtype=pred.dtype)
        with torch.no_grad():
            clip = cameras.world_to_clip(out.query_points)
            pix = cameras.world_to_pixel(out.query_points)
            size = torch.tensor([cameras.width, cameras.height], dtype=pred.dtype, device=pred.device)
            true_uv = pix / size * 2.0 - 1.0
            front = clip[..., 3] > 0
        if bool(front.any()):
            transformer = (out.image_coords - true_uv).abs().sum(-1)[front].mean() / 2.0
    total = weights.sdf * sdf + weights.chamfer * chamfer + weights.transformer * transformer
    return {"total": total, "sdf": sdf, "chamfer": chamfer, "transformer": transformer}


# ----------------------------------------------------------------------------------------------- extraction
def _single_image(model: ImplicitPredictor, image) -> torch.Tensor:
    image = float_tensor("image", image, "[C,H,W] or [1,C,H,W]", ndims=(3, 4))
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise InputError(f"image must be one image [C,H,W] (or [1,C,H,W]); got {tuple(image.shape)}.")
        image = image[0]
    p = next(model.parameters())
    return image[None].to(device=p.device, dtype=p.dtype)


def sdf_grid(model: ImplicitPredictor, image, resolution: int = 64, bounds: float = 0.6,
             chunk: int = 65536, coarse_resolution: int = 0) -> torch.Tensor:
    """Predicted SDF at the ``R^3`` grid points ``-b + (i, j, k) 2b / (R - 1)``, as ``values[i,j,k]`` (x, y, z).

    The image is encoded once; the queries are evaluated ``chunk`` at a time without gradient, so memory stays
    bounded at any resolution and the result does not depend on ``chunk``. With ``coarse_resolution > 0`` the
    grid is refined from that coarse level near the surface only
    (:func:`unrender.geometry.refined_grid.refined_sdf_grid`: the same signs, far fewer queries).

    Args:
        model: an :class:`ImplicitPredictor`.
        image: ``[C,H,W]`` (or ``[1,C,H,W]``).
        resolution: ``R >= 2`` grid points per axis.
        bounds: ``b``, half-size of the cube.
        chunk: queries per decoder call (>= 1).
        coarse_resolution: ``0`` (every point queried) or ``R_0`` with ``R - 1 = (R_0 - 1) 2^L``.
    Returns:
        ``[R,R,R]`` on the model's device and dtype.

    Example:
        >>> sdf_grid(ImplicitPredictor(num_coarse_points=64), torch.rand(4, 64, 64), resolution=8).shape
        torch.Size([8, 8, 8])
    """
    resolution, chunk, bounds = int(resolution), int(chunk), float(bounds)
    if resolution < 2 or chunk < 1 or not bounds > 0:
        raise InputError(f"need resolution >= 2, chunk >= 1 and bounds > 0; got {resolution}, {chunk}, {bounds}.")
    image = _single_image(model, image)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            code = model.encode(image)

            def field(points: torch.Tensor) -> torch.Tensor:
                return model.query(code, points[None])[0][0]

            if coarse_resolution:
                return refined_sdf_grid(field, resolution, bounds, int(coarse_resolution), chunk=chunk,
                                        dtype=image.dtype, device=image.device).values
            grid = grid_points(resolution, bounds, image.dtype, image.device).reshape(-1, 3)
            return evaluate_chunked(field, grid, chunk).reshape(resolution, resolution, resolution)
    finally:
        model.train(was_training)


def extract_mesh(model: ImplicitPredictor, image, resolution: int = 64, bounds: float = 0.6,
                 chunk: int = 65536, coarse_resolution: int = 0, level: float = 0.0) -> Mesh:
    """Mesh of the predicted level set ``sdf = level``: :func:`sdf_grid` + marching cubes (closed where it stays
    in the cube).

    Uses ``skimage.measure.marching_cubes`` (Lewiner) with outward-facing (counter-clockwise) triangles; vertices
    are in the canonical object frame. A field that does not cross ``level`` in the cube gives an empty mesh
    (``vertices [0,3]``, ``faces [0,3]``) rather than an error. ``level > 0`` extracts a surface offset outwards
    by about ``level`` where the field is a true distance; a regressed field is often much flatter near the
    surface (thin parts become shallow dips that stay above 0), so there a small level moves the surface far.

    Args:
        model, image, resolution, bounds, chunk, coarse_resolution: as :func:`sdf_grid`.
        level: the iso-value (0 = the predicted surface).
    Returns:
        :class:`~unrender.mesh.Mesh` (float32 vertices on the CPU).

    Example:
        >>> mesh = extract_mesh(ImplicitPredictor(num_coarse_points=64), torch.rand(4, 64, 64), resolution=16)
        >>> mesh.vertices.shape[1]
        3
    """
    values = sdf_grid(model, image, resolution, bounds, chunk, coarse_resolution).float().cpu().numpy()
    return surface_from_grid(values, bounds, level)


def surface_from_grid(values: np.ndarray, bounds: float = 0.6, level: float = 0.0) -> Mesh:
    """Marching cubes of ``values [R,R,R]`` (an :func:`sdf_grid`) at ``level``, as :func:`extract_mesh` describes.

    Example:
        >>> x = np.linspace(-0.6, 0.6, 16)
        >>> sdf = np.sqrt(sum(g ** 2 for g in np.meshgrid(x, x, x, indexing="ij"))) - 0.4
        >>> float(surface_from_grid(sdf, level=0.1).vertices.norm(dim=-1).mean()) > 0.45
        True
    """
    from skimage.measure import marching_cubes  # imported here: only extraction needs scikit-image

    if not np.isfinite(values).all():
        raise InputError("the model predicts NaN or infinite SDF values for this image; check the checkpoint "
                         "and the image (finite, [0, 1]).")
    level = float(level)
    if values.min() >= level or values.max() <= level:
        return Mesh(vertices=torch.zeros(0, 3), faces=torch.zeros(0, 3, dtype=torch.int64))
    step = 2.0 * float(bounds) / (values.shape[0] - 1)
    # With the volume indexed [x, y, z], "descent" winds the triangles counter-clockwise seen from where the
    # values are larger, i.e. from outside an SDF (checked by the signed volume in the tests).
    verts, faces, _, _ = marching_cubes(values, level=level, spacing=(step,) * 3, gradient_direction="descent")
    verts = torch.from_numpy(np.ascontiguousarray(verts - float(bounds))).float()
    return Mesh(vertices=verts, faces=torch.from_numpy(np.ascontiguousarray(faces)).long())
