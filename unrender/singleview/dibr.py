"""DIB-R-style single-view mesh predictor (Chen et al., NeurIPS 2019): one image -> coloured template mesh.

Model (:class:`DIBRPredictor`): an :class:`~unrender.singleview.encoders.ImageEncoder` gives a global feature
``g``; small heads map it to per-vertex offsets ``d``, colours and (optionally) a global centre/scale and a
light. With the icosphere template ``t`` (642 vertices at 3 subdivisions, radius 0.5 in the canonical object
frame of unit-size objects):

    v = c + s (t + d_max tanh(raw_d)),   c = c_max tanh(raw_c),   s = exp(s_max tanh(raw_s)),   rgb = sigmoid(raw_rgb)

Every head's last layer starts at zero, so an untrained model outputs the grey template sphere.

Training (:func:`dibr_losses`), per sample over ``K`` views (DIB-R uses two) with known cameras:

* silhouette: ``1 - sum(S M) / sum(S + M - S M)`` per view, ``S`` the soft silhouette
  (:func:`unrender.render.soft_silhouette`) and ``M`` the target mask;
* colour: ``L1`` between the rendered colour (rasterize + interpolate of the vertex colours, optionally
  shaded by the predicted light and antialiased) and the target, premultiplied, over the union of the
  target mask and the rendered coverage;
* Laplacian: uniform ``mean_i |mean_{j in N(i)} v_j - v_i|^2`` (:func:`unrender.geometry.dmtet.laplacian_loss`);
* flatten: ``mean_e (cos theta_e + 1)^2`` over interior edges (SoftRas / DIB-R), see :func:`flatten_loss`.

Lighting (optional, off by default): ``"sh"`` predicts 9 grey SH radiance coefficients ``c`` per sample and
shades ``rgb * E(n) / pi`` with the irradiance ``E(n) = sum_i A_l(i) c_i Y_i(n)`` (Ramamoorthi & Hanrahan;
starts at ``E = pi``, i.e. unlit); ``"directional"`` predicts ``(dir[3], ambient, intensity)`` and shades
``rgb * (ambient + intensity max(n . dir, 0))`` (starts at ambient 1, intensity ``softplus(-4) = 0.018``).

Images: targets are given top row first (as image files); the raster's row 0 is the bottom, so renders are
flipped before they are compared.

Example:
    >>> model = DIBRPredictor()
    >>> out = model(torch.rand(2, 4, 64, 64))
    >>> out.vertices.shape, out.colors.shape, out.faces.shape
    (torch.Size([2, 642, 3]), torch.Size([2, 642, 3]), torch.Size([1280, 3]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..cameras import Camera
from ..checks import float_tensor, index_tensor
from ..errors import InputError
from ..geometry.primitives import icosphere_arrays
from ..mesh import Mesh
from ..render.antialias import EdgeTopology, antialias, build_topology
from ..render.lights.spherical_harmonics import sh9_irradiance
from ..render.rasterize import interpolate, rasterize
from ..render.soft_silhouette import soft_silhouette
from .encoders import DEFAULT_WIDTHS, ImageEncoder
from .silhouette_chamfer import silhouette_chamfer_loss
from .symmetry import mirror_permutation, symmetrize

_LIGHT_SIZES = {"none": 0, "sh": 9, "directional": 5}


@dataclass
class DIBROutput:
    """Prediction of :class:`DIBRPredictor` for a batch of ``B`` images.

    Attributes:
        vertices: ``[B,V,3]`` positions in the canonical object frame.
        colors: ``[B,V,3]`` linear RGB albedo in ``(0, 1)``.
        faces: ``[F,3]`` int64 template triangles, shared by the batch (counter-clockwise seen from outside).
        light: ``[B,9]`` SH coefficients (``lighting="sh"``), ``[B,5]`` ``(dir, ambient, intensity)``
            (``"directional"``) or ``None``.
        lighting: ``"none"``, ``"sh"`` or ``"directional"``.
    """

    vertices: torch.Tensor
    colors: torch.Tensor
    faces: torch.Tensor
    light: torch.Tensor | None = None
    lighting: str = "none"

    def mesh(self, index: int = 0) -> Mesh:
        """Sample ``index`` as a :class:`~unrender.mesh.Mesh` with vertex colours (detached, same device).

        Example:
            >>> DIBRPredictor()(torch.rand(1, 4, 64, 64)).mesh(0).vertex_colors.shape
            torch.Size([642, 3])
        """
        if not -self.vertices.shape[0] <= index < self.vertices.shape[0]:
            raise InputError(f"index {index} is out of range for a batch of {self.vertices.shape[0]} predictions.")
        return Mesh(vertices=self.vertices[index].detach(), faces=self.faces,
                    vertex_colors=self.colors[index].detach())


class DIBRPredictor(nn.Module):
    """Image -> per-vertex offsets and colours of an icosphere template (module docstring for the formulas).

    Args:
        in_channels: 3 (RGB) or 4 (RGBA; alpha = mask).
        subdivisions: icosphere subdivisions of the template (3 -> 642 vertices, 1280 faces).
        template_radius: radius of the template sphere.
        max_offset: ``d_max``, bound of each per-vertex offset component.
        global_transform: predict a centre (``c_max = 0.25``) and a scale (``s_max = 0.5``) per sample.
        lighting: ``"none"``, ``"sh"`` or ``"directional"``.
        widths, feature_dim: encoder stage widths and global feature size.
        hidden_dim: width of the decoder's hidden layer.
        symmetry: ``"none"``, or the axis ``"x"``/``"y"``/``"z"`` whose plane through the origin the predicted
            shape is mirror symmetric about (:func:`unrender.singleview.symmetry.symmetrize`, applied after the
            centre and scale).
        dropout: probability that dropout zeroes an element of the global feature before the heads (training
            only; a regulariser against memorising the training objects).

    Example:
        >>> model = DIBRPredictor(lighting="sh")
        >>> model(torch.rand(1, 3, 64, 64)).light.shape
        torch.Size([1, 9])
    """

    def __init__(self, in_channels: int = 4, subdivisions: int = 3, template_radius: float = 0.5,
                 max_offset: float = 0.5, global_transform: bool = True, lighting: str = "none",
                 widths: tuple[int, ...] = DEFAULT_WIDTHS, feature_dim: int = 256, hidden_dim: int = 512,
                 symmetry: str = "none", dropout: float = 0.0):
        super().__init__()
        if lighting not in _LIGHT_SIZES:
            raise InputError(f"lighting must be 'none', 'sh' or 'directional'; got {lighting!r}.")
        if not (template_radius > 0 and max_offset > 0):
            raise InputError(f"template_radius and max_offset must be positive; got {template_radius}, {max_offset}.")
        verts, faces = icosphere_arrays(subdivisions)
        self.register_buffer("template", torch.tensor(verts * template_radius, dtype=torch.float32))
        self.register_buffer("faces", torch.tensor(faces, dtype=torch.int64))
        self.symmetry = symmetry
        if symmetry != "none":  # not persistent: checkpoints of symmetric and free models stay interchangeable
            self.register_buffer("mirror", mirror_permutation(self.template, symmetry), persistent=False)
        self.max_offset = float(max_offset)
        self.lighting = lighting
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1); got {dropout}.")
        self.encoder = ImageEncoder(in_channels, widths, feature_dim)
        self.feature_dropout = nn.Dropout(dropout)  # no parameters: checkpoints load with any rate
        nv = verts.shape[0]
        self.decoder = nn.Sequential(nn.Linear(feature_dim, hidden_dim), nn.ReLU())
        self.offset_head = nn.Linear(hidden_dim, nv * 3)
        self.color_head = nn.Linear(hidden_dim, nv * 3)
        self.transform_head = nn.Linear(feature_dim, 4) if global_transform else None
        self.light_head = nn.Linear(feature_dim, _LIGHT_SIZES[lighting]) if lighting != "none" else None
        for head in (self.offset_head, self.color_head, self.transform_head, self.light_head):
            if head is not None:  # start from the grey, unlit template sphere
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    @property
    def num_vertices(self) -> int:
        """V, the template's vertex count."""
        return self.template.shape[0]

    def forward(self, images) -> DIBROutput:
        """``images[B,C,H,W]`` (linear RGB(A), top row first) -> :class:`DIBROutput`."""
        g = self.encoder(images).global_feature
        b = g.shape[0]
        hidden = self.decoder(self.feature_dropout(g))
        offsets = self.max_offset * torch.tanh(self.offset_head(hidden)).reshape(b, -1, 3)
        verts = self.template.to(g.dtype) + offsets
        if self.transform_head is not None:
            raw = torch.tanh(self.transform_head(g))
            verts = 0.25 * raw[:, None, :3] + torch.exp(0.5 * raw[:, None, 3:]) * verts
        if self.symmetry != "none":
            verts = symmetrize(verts, self.mirror, self.symmetry)
        colors = torch.sigmoid(self.color_head(hidden)).reshape(b, -1, 3)
        light = None
        if self.light_head is not None:
            raw = self.light_head(g)
            if self.lighting == "sh":
                base = torch.zeros(9, dtype=g.dtype, device=g.device)
                base[0] = 2.0 * math.sqrt(math.pi)  # constant radiance 1: E(n) = pi
                light = base + raw
            else:
                direction = nn.functional.normalize(raw[:, :3] + raw.new_tensor([0.0, 0.0, 1.0]), dim=-1)
                ambient = nn.functional.softplus(raw[:, 3:4] + math.log(math.e - 1.0))  # starts at 1
                intensity = nn.functional.softplus(raw[:, 4:5] - 4.0)  # starts near 0
                light = torch.cat([direction, ambient, intensity], 1)
        return DIBROutput(verts, colors, self.faces, light, self.lighting)


# ----------------------------------------------------------------------------------------------- shading
def batched_vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals ``[B,V,3]`` of ``vertices[B,V,3]``, ``faces[F,3]``; differentiable.

    ``n_i = normalize(sum over the faces f containing i of (v_1 - v_0) x (v_2 - v_0))``.

    Example:
        >>> v = torch.tensor([[[0., 0, 0], [1, 0, 0], [0, 1, 0]]])
        >>> batched_vertex_normals(v, torch.tensor([[0, 1, 2]]))[0, 0].tolist()
        [0.0, 0.0, 1.0]
    """
    tri = vertices[:, faces]  # [B,F,3,3]
    fn = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    acc = torch.zeros_like(vertices).index_add_(1, faces.reshape(-1), fn.repeat_interleave(3, dim=1))
    return nn.functional.normalize(acc, dim=-1, eps=1e-12)


def shade_colors(albedo: torch.Tensor, normals: torch.Tensor, light: torch.Tensor | None, lighting: str):
    """Shade ``albedo[...,3]`` at unit ``normals[...,3]`` with ``light[...,L]`` (module docstring).

    ``"sh"``: ``albedo * max(E(n), 0) / pi`` with ``E(n) = sum_i A_l(i) c_i Y_i(n)``; ``"directional"``:
    ``albedo * (ambient + intensity * max(n . dir, 0))``; ``"none"``: ``albedo``.

    Example:
        >>> c = torch.zeros(1, 9); c[0, 0] = 2 * math.sqrt(math.pi)
        >>> shade_colors(torch.full((1, 3), 0.5), torch.tensor([[0.0, 1, 0]]), c, "sh")
        tensor([[0.5000, 0.5000, 0.5000]])
    """
    if lighting == "none" or light is None:
        return albedo
    if lighting == "sh":
        irradiance = sh9_irradiance(normals, light[..., None])
        return albedo * irradiance.clamp(min=0.0) / math.pi
    if lighting == "directional":
        cos = (normals * light[..., :3]).sum(-1, keepdim=True).clamp(min=0.0)
        return albedo * (light[..., 3:4] + light[..., 4:5] * cos)
    raise InputError(f"lighting must be 'none', 'sh' or 'directional'; got {lighting!r}.")


@dataclass
class DIBRRender:
    """Renders of a :class:`DIBROutput` from ``N = B K`` cameras, all top row first.

    Attributes:
        silhouette: ``[N,H,W]`` soft silhouette in [0, 1] (gradients reach the background).
        color: ``[N,H,W,3]`` shaded colour over black, antialiased at silhouettes.
        alpha: ``[N,H,W]`` coverage of the rasterized mesh (pixel centres; antialiased when asked).
    """

    silhouette: torch.Tensor
    color: torch.Tensor
    alpha: torch.Tensor


def default_silhouette_delta(height: int, width: int) -> float:
    """Soft-silhouette falloff ``delta = (0.4 * 2 / max(H, W))^2`` (ndc^2): ``sqrt(delta)`` is 0.4 pixel.

    At 64^2 this is 1.6e-4, about DIB-R's ``1 / 7000`` for its 64^2 ShapeNet images. It is narrower than
    :func:`soft_silhouette`'s own default because near a mesh's outline many small triangles multiply their
    ``1 - e_j`` together: for a 642-vertex ellipsoid at 64^2 the area where ``A > 0.5`` exceeded the raster
    of the true mesh by 26% at ``sqrt(delta)`` = 1.3 pixels, 12% at 0.64 and 5% at 0.32 pixel, and an IoU
    loss shrinks the prediction until that halo fits the mask. Pass a larger delta for a longer gradient
    reach early in training.
    """
    return (0.8 / max(height, width)) ** 2


def render_views(out: DIBROutput, cameras: Camera, silhouette_delta: float | None = None,
                 use_antialias: bool = False, cull_backfaces: bool = True,
                 topology: EdgeTopology | None = None) -> DIBRRender:
    """Render each sample's mesh from its ``K = len(cameras) / B`` cameras (sample-major: camera ``b K + k``).

    Args:
        out: prediction for ``B`` samples.
        cameras: ``B K`` cameras sharing one image size ``(H, W)``.
        silhouette_delta: soft-silhouette falloff; default :func:`default_silhouette_delta`.
        use_antialias: blend colours at silhouettes (visibility gradients), see :func:`unrender.render.antialias`.
        cull_backfaces: build the soft silhouette from the triangles that face each camera only. For a closed,
            consistently oriented mesh (the deformed template) their projections cover the same silhouette,
            at about half the cost; the soft band outside is then made by the front triangles alone.
        topology: ``build_topology(out.faces)``, to reuse across calls.
    Returns:
        :class:`DIBRRender`, differentiable w.r.t. the vertices, colours and light.

    Example:
        >>> from unrender.cameras import look_at
        >>> cams = Camera.from_fov(40, 32, 32, look_at(torch.tensor([[0., 0, 3], [3, 0, 0]])))
        >>> r = render_views(DIBRPredictor()(torch.rand(1, 4, 64, 64)), cams)
        >>> r.silhouette.shape, round(r.silhouette[0, 16, 16].item(), 3)
        (torch.Size([2, 32, 32]), 1.0)
    """
    b = out.vertices.shape[0]
    n = len(cameras)
    if n % b:
        raise InputError(f"cameras must hold K views per sample (B K = multiple of B = {b}); got {n} cameras.")
    per = n // b
    cameras = cameras.to(device=out.vertices.device, dtype=out.vertices.dtype)
    h, w = cameras.height, cameras.width
    owner = torch.arange(n, device=out.vertices.device) // per
    verts = out.vertices[owner]
    pos = cameras.world_to_clip(verts).contiguous()
    delta = default_silhouette_delta(h, w) if silhouette_delta is None else silhouette_delta
    sil = soft_silhouette(pos, out.faces, (h, w), delta=delta, cull_backfaces=cull_backfaces).flip(1)
    rast = rasterize(pos, out.faces, (h, w))
    color = interpolate(out.colors[owner], rast, out.faces)
    if out.lighting != "none" and out.light is not None:
        normals = nn.functional.normalize(
            interpolate(batched_vertex_normals(out.vertices, out.faces)[owner], rast, out.faces), dim=-1, eps=1e-12)
        color = shade_colors(color, normals, out.light[owner][:, None, None, :], out.lighting)
    covered = (rast[..., 3:] > 0).to(color.dtype)
    layers = torch.cat([color * covered, covered], -1)
    if use_antialias:
        layers = antialias(layers, rast, pos, out.faces, topology=topology)
    layers = layers.flip(1)
    return DIBRRender(sil, layers[..., :3], layers[..., 3])


# ----------------------------------------------------------------------------------------------- losses
def silhouette_iou_loss(pred, target, eps: float = 1e-6) -> torch.Tensor:
    """Soft IoU loss ``mean_n [1 - (sum S M + eps) / (sum (S + M - S M) + eps)]`` over images ``[N,H,W]``.

    Zero for identical binary masks (including two empty ones), 1 for disjoint ones.

    Example:
        >>> m = torch.zeros(1, 4, 4); m[0, :2] = 1
        >>> silhouette_iou_loss(m, m).item(), round(silhouette_iou_loss(m, 1 - m).item(), 6)
        (0.0, 1.0)
    """
    pred = float_tensor("pred", pred, "[N,H,W]", ndims=(3,))
    target = float_tensor("target", target, "[N,H,W]", ndims=(3,)).to(pred.dtype)
    if pred.shape != target.shape:
        raise InputError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} masks must have one shape.")
    inter = (pred * target).sum((1, 2))
    union = (pred + target - pred * target).sum((1, 2))
    return (1.0 - (inter + eps) / (union + eps)).mean()


def _unique_edges(faces: torch.Tensor, num_vertices: int) -> torch.Tensor:
    """``[E,2]`` unique undirected edges of ``faces[F,3]`` (smaller index first)."""
    pairs = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    lo, hi = pairs.amin(1), pairs.amax(1)
    keys = torch.unique(lo * num_vertices + hi)
    return torch.stack([keys // num_vertices, keys % num_vertices], 1)


def uniform_laplacian_loss(vertices, faces) -> torch.Tensor:
    """Batched :func:`unrender.geometry.dmtet.laplacian_loss`: ``mean_b mean_i |mean_{j in N(i)} v_j - v_i|^2``.

    Args:
        vertices: ``[B,V,3]`` or ``[V,3]``; faces: ``[F,3]`` shared by the batch.
    Returns:
        scalar; vertices without neighbours are left out, 0 for no faces.

    Example:
        >>> v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
        >>> uniform_laplacian_loss(v, torch.tensor([[0, 1, 2]])).item()
        1.0
    """
    vertices = float_tensor("vertices", vertices, "[B,V,3] or [V,3]", last_dim=3, ndims=(2, 3))
    vertices = vertices[None] if vertices.dim() == 2 else vertices
    nv = vertices.shape[1]
    faces = index_tensor("faces", faces, "[F,3]", last_dim=3, num_vertices=nv, device=vertices.device)
    if faces.shape[0] == 0:
        return vertices.sum() * 0
    edges = _unique_edges(faces, nv)
    ends, nbrs = torch.cat([edges[:, 0], edges[:, 1]]), torch.cat([edges[:, 1], edges[:, 0]])
    degree = torch.bincount(ends, minlength=nv)
    used = degree > 0
    nsum = torch.zeros_like(vertices).index_add_(1, ends, vertices[:, nbrs])
    offset = nsum[:, used] / degree[used, None].to(vertices.dtype) - vertices[:, used]
    return offset.pow(2).sum(-1).mean()


def flatten_loss(vertices, faces, topology: EdgeTopology | None = None, eps: float = 1e-12) -> torch.Tensor:
    """Flatten regularizer (SoftRas / DIB-R): ``mean_{b,e} (cos theta_e + 1)^2`` over interior manifold edges.

    For edge ``(a, b)`` shared by faces with opposite vertices ``c`` and ``d``, ``theta_e`` is the angle between
    the components of ``c - a`` and ``d - a`` orthogonal to the edge: ``pi`` (``cos = -1``, loss 0) when the
    two faces are coplanar, smaller when they fold towards each other.

    Args:
        vertices: ``[B,V,3]`` or ``[V,3]``; faces: ``[F,3]``; topology: ``build_topology(faces)``, to reuse.
    Returns:
        scalar (0 when there are no interior edges).

    Example:
        >>> v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
        >>> f = torch.tensor([[0, 1, 2], [2, 1, 3]])
        >>> flatten_loss(v, f).item()                          # planar
        0.0
        >>> round(flatten_loss(v + torch.tensor([0, 0, 1.0]) * (v[:, :1] * v[:, 1:2]), f).item(), 3)  # folded
        0.179
    """
    vertices = float_tensor("vertices", vertices, "[B,V,3] or [V,3]", last_dim=3, ndims=(2, 3))
    vertices = vertices[None] if vertices.dim() == 2 else vertices
    faces = index_tensor("faces", faces, "[F,3]", last_dim=3, num_vertices=vertices.shape[1], device=vertices.device)
    topo = build_topology(faces) if topology is None else topology.to(vertices.device)
    interior = (topo.edge_faces[:, 1] >= 0) & ~topo.nonmanifold
    if not bool(interior.any()):
        return vertices.sum() * 0
    a, b = topo.edges[interior, 0], topo.edges[interior, 1]
    c, d = topo.edge_opposite[interior, 0], topo.edge_opposite[interior, 1]
    va, vb, vc, vd = vertices[:, a], vertices[:, b], vertices[:, c], vertices[:, d]
    axis = nn.functional.normalize(vb - va, dim=-1, eps=eps)

    def orthogonal(p):
        rel = p - va
        return rel - (rel * axis).sum(-1, keepdim=True) * axis

    u, v = orthogonal(vc), orthogonal(vd)
    cos = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1)).clamp(min=eps)
    return (cos + 1.0).pow(2).mean()


@dataclass
class DIBRLossWeights:
    """Weights and settings of :func:`dibr_losses`.

    Attributes:
        silhouette: weight of the soft-silhouette IoU loss.
        color: weight of the colour L1 over the target mask.
        laplacian: weight of the uniform Laplacian (mean squared umbrella vector, in squared object units).
        flatten: weight of the flatten loss (mean ``(cos theta + 1)^2`` over edges).
        silhouette_delta: soft-silhouette falloff in ndc^2; ``None`` picks about 1-2 pixels for the image size.
        antialias: antialias the colour render, so that the colour term also moves silhouettes (visibility
            gradients). Off by default: the soft silhouette already places the outline, and in overfitting
            experiments the extra colour-driven visibility gradients crumpled the surface (bumps along colour
            edges) where without them the same weights gave a smooth mesh with a higher IoU.
        silhouette_chamfer: weight of :func:`~unrender.singleview.silhouette_chamfer.silhouette_chamfer_loss` (not in
            DIB-R; 0: off), whose gradient reaches mask parts far from the mesh.
    """

    silhouette: float = 1.0
    color: float = 1.0
    laplacian: float = 20.0
    flatten: float = 0.2
    silhouette_delta: float | None = None
    antialias: bool = False
    silhouette_chamfer: float = 0.0


def dibr_losses(out: DIBROutput, cameras: Camera, target_masks, target_rgb,
                weights: DIBRLossWeights | None = None,
                topology: EdgeTopology | None = None) -> dict[str, torch.Tensor]:
    """DIB-R's training losses for ``B`` predictions, each seen by ``K`` cameras (two in DIB-R).

    ``total = w_s L_iou + w_c L_rgb + w_l L_lap + w_f L_flat (+ w_sc L_sc)`` with (module docstring)
    ``L_iou = mean_{b,k} [1 - sum(S M) / sum(S + M - S M)]`` and
    ``L_rgb = sum_p |I - T M| U / (3 sum_p U)`` over the union ``U = max(M, coverage)``, colours premultiplied
    (over black) on both sides.

    Args:
        out: :class:`DIBROutput` of ``B`` samples.
        cameras: ``B K`` cameras, sample-major (camera ``b K + k`` sees sample ``b``), one image size ``(H, W)``.
        target_masks: ``[B,K,H,W]`` in [0, 1], top row first.
        target_rgb: ``[B,K,H,W,3]`` linear RGB, top row first (only read inside the mask).
        weights: :class:`DIBRLossWeights` (defaults when ``None``).
        topology: ``build_topology(out.faces)``, to reuse across steps.
    Returns:
        dict of scalars: ``"total"``, ``"silhouette"``, ``"color"``, ``"laplacian"``, ``"flatten"``,
        ``"silhouette_chamfer"`` (unweighted terms), and ``"iou"``: the mean IoU of the rasterized mesh's
        coverage and the mask, both thresholded at 0.5 (no gradient; for logging).

    The colour term is skipped (0) when ``weights.color == 0``.

    Example:
        >>> from unrender.cameras import look_at
        >>> cams = Camera.from_fov(40, 32, 32, look_at(torch.tensor([[0., 0, 3], [3, 0, 0]])))
        >>> out = DIBRPredictor()(torch.rand(1, 4, 64, 64))
        >>> losses = dibr_losses(out, cams, torch.zeros(1, 2, 32, 32), torch.zeros(1, 2, 32, 32, 3))
        >>> round(losses["silhouette"].item(), 3)      # nothing to overlap with
        1.0
    """
    weights = DIBRLossWeights() if weights is None else weights
    b = out.vertices.shape[0]
    masks = float_tensor("target_masks", target_masks, "[B,K,H,W]", ndims=(4,)).to(out.vertices)
    rgb = float_tensor("target_rgb", target_rgb, "[B,K,H,W,3]", last_dim=3, ndims=(5,)).to(out.vertices)
    if masks.shape[0] != b or len(cameras) != b * masks.shape[1]:
        raise InputError(f"target_masks {tuple(masks.shape)} must be [B,K,H,W] with B = {b} samples and B K = "
                         f"len(cameras) = {len(cameras)} views.")
    if masks.shape[2:] != (cameras.height, cameras.width) or rgb.shape[:4] != masks.shape:
        raise InputError(f"target_masks {tuple(masks.shape)} and target_rgb {tuple(rgb.shape)} must match the "
                         f"cameras' image size {cameras.height}x{cameras.width}.")
    topology = build_topology(out.faces) if topology is None else topology
    render = render_views(out, cameras, weights.silhouette_delta, use_antialias=weights.antialias,
                          topology=topology)
    m = masks.reshape(-1, *masks.shape[2:])
    sil = silhouette_iou_loss(render.silhouette, m)
    if weights.color != 0:
        # Both sides premultiplied (over black) and compared over the union of the two masks: inside the target
        # mask only, uncovered target pixels would pull the silhouette outwards with nothing pulling back.
        region = torch.maximum(m, render.alpha.detach())
        diff = (render.color - rgb.reshape(-1, *rgb.shape[2:]) * m[..., None]).abs().sum(-1)
        color = (diff * region).sum() / (3.0 * region.sum()).clamp(min=1e-6)
    else:
        color = sil * 0
    lap = uniform_laplacian_loss(out.vertices, out.faces)
    flat = flatten_loss(out.vertices, out.faces, topology)
    total = weights.silhouette * sil + weights.color * color + weights.laplacian * lap + weights.flatten * flat
    if weights.silhouette_chamfer != 0:
        owner = torch.arange(len(cameras), device=out.vertices.device) // masks.shape[1]
        cams = cameras.to(device=out.vertices.device, dtype=out.vertices.dtype)
        reach = silhouette_chamfer_loss(out.vertices[owner], cams, m)
        total = total + weights.silhouette_chamfer * reach
    else:
        reach = sil * 0
    with torch.no_grad():
        hard, ref = render.alpha > 0.5, m > 0.5
        union = (hard | ref).sum((1, 2)).clamp(min=1)
        iou = ((hard & ref).sum((1, 2)) / union).to(out.vertices.dtype).mean()
    return {"total": total, "silhouette": sil, "color": color, "laplacian": lap, "flatten": flat,
            "silhouette_chamfer": reach, "iou": iou}
