"""Neural fields over 3-D space: a multiresolution grid encoding and the PBR material field built on it.

**Encoding** (Instant-NGP's multiresolution grid, in plain PyTorch). Level ``l`` of ``L`` has
resolution ``N_l = floor(N_min * b^l)``, ``b = exp((ln N_max - ln N_min) / (L - 1))``, and ``F``
features per grid vertex. A point ``x`` in the unit cube is encoded by trilinear interpolation of
the features at the 8 corners of its cell on every level, concatenated: ``enc(x) [L*F]``.
A level whose ``(N_l + 1)^3`` vertices fit in ``table_size`` is stored densely and interpolated
with ``grid_sample`` (one fused kernel, CPU and CUDA); a finer level stores its features in a table
of ``table_size`` rows addressed by the spatial hash
``h(i, j, k) = (i * 1 ^ j * 2654435761 ^ k * 805459861) mod table_size`` and is interpolated
by gathering the 8 corners. Features start uniform in ``[-1e-4, 1e-4]`` as in Instant-NGP.

**Material field.** ``MaterialField(x) -> (base_color [N,3], orm [N,3])``: the encoding of
``x`` (mapped from the world ``bounds`` to the unit cube) feeds a small MLP (ReLU hidden layers)
with a sigmoid output, scaled into per-channel ranges as nvdiffrec does, so that roughness stays in
``[min_roughness, 1]`` and metallic in ``[0, 1]``. The occlusion channel of ``orm`` is fixed to 1
(ambient occlusion is not identifiable from images under an unknown light).

**Normal perturbation** (nvdiffrec's third material output). With ``normal_offset = a > 0`` the MLP has three
more outputs and the field returns a third tensor, a world-space offset ``d = a tanh(y) [N,3]`` that the
renderer adds to the geometric normal, ``n' = normalize(n + d)``; ``a`` bounds how far (``atan(a sqrt 3)`` at
most) the shading normal may lean. Baking turns ``n'`` into a tangent-space normal map.
"""

from __future__ import annotations

import math

import torch

from ..checks import float_tensor
from ..errors import InputError

_PRIMES = (1, 2654435761, 805459861)


class GridEncoding(torch.nn.Module):
    """Multiresolution dense/hashed grid encoding of points in ``[0,1]^3`` (module docstring).

    Args:
        levels: number of levels ``L``.
        features: features per level ``F``.
        min_res, max_res: ``N_min`` and ``N_max`` (cells per axis of the coarsest and finest level).
        table_size: rows of a hashed level (``2^log2_table``); coarser levels are dense.

    Example:
        >>> enc = GridEncoding(levels=4, features=2, min_res=4, max_res=32, table_size=2**12)
        >>> enc(torch.rand(5, 3)).shape
        torch.Size([5, 8])
    """

    def __init__(self, levels: int = 12, features: int = 2, min_res: int = 16, max_res: int = 512,
                 table_size: int = 2 ** 17):
        super().__init__()
        for name, val in (("levels", levels), ("features", features), ("min_res", min_res), ("max_res", max_res),
                          ("table_size", table_size)):
            if isinstance(val, bool) or int(val) != val or val < 1:
                raise InputError(f"{name} must be a positive integer; got {val!r}.")
        if max_res < min_res:
            raise InputError(f"max_res ({max_res}) must be >= min_res ({min_res}).")
        growth = math.exp((math.log(max_res) - math.log(min_res)) / max(levels - 1, 1))
        self.resolutions = [int(math.floor(min_res * growth ** l)) for l in range(levels)]
        self.features, self.table_size = int(features), int(table_size)
        self.dense = torch.nn.ParameterList()
        self.hashed = torch.nn.ParameterList()
        self._kinds = []
        for res in self.resolutions:
            n = res + 1
            if n ** 3 <= table_size:  # [1,F,D,H,W] for grid_sample (D = z, H = y, W = x)
                self.dense.append(torch.nn.Parameter(torch.empty(1, features, n, n, n).uniform_(-1e-4, 1e-4)))
                self._kinds.append(("dense", len(self.dense) - 1))
            else:
                self.hashed.append(torch.nn.Parameter(torch.empty(table_size, features).uniform_(-1e-4, 1e-4)))
                self._kinds.append(("hash", len(self.hashed) - 1))

    @property
    def out_dim(self) -> int:
        """Length ``L * F`` of the encoding."""
        return len(self.resolutions) * self.features

    def _hashed_level(self, x: torch.Tensor, table: torch.Tensor, res: int) -> torch.Tensor:
        p = x * res
        p0 = torch.floor(p).clamp(0, res - 1)
        f = p - p0
        i0 = p0.long()
        out = 0
        for corner in range(8):
            o = torch.tensor([(corner >> 0) & 1, (corner >> 1) & 1, (corner >> 2) & 1], device=x.device)
            idx = i0 + o
            h = (idx[:, 0] * _PRIMES[0]) ^ (idx[:, 1] * _PRIMES[1]) ^ (idx[:, 2] * _PRIMES[2])
            w = torch.where(o.bool(), f, 1 - f).prod(-1, keepdim=True)
            out = out + w * table[h % self.table_size]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``x [N,3]`` (in ``[0,1]^3``; clamped) -> ``[N, L*F]``."""
        x = float_tensor("x", x, "[N,3]", last_dim=3, ndims=(2,)).clamp(0.0, 1.0)
        grid = (x * 2 - 1).reshape(1, -1, 1, 1, 3).to(self.dense[0].dtype if len(self.dense) else x.dtype)
        feats = []
        for res, (kind, k) in zip(self.resolutions, self._kinds):
            if kind == "dense":
                # align_corners=True: -1 and +1 are the centres of the first and last grid vertex
                v = torch.nn.functional.grid_sample(self.dense[k], grid, mode="bilinear", align_corners=True)
                feats.append(v.reshape(self.features, -1).t())
            else:
                feats.append(self._hashed_level(x, self.hashed[k], res))
        return torch.cat(feats, -1)


def mlp(in_dim: int, out_dim: int, hidden: int, layers: int) -> torch.nn.Sequential:
    """``layers`` hidden ReLU layers of width ``hidden``, then a linear output layer."""
    mods, d = [], in_dim
    for _ in range(layers):
        mods += [torch.nn.Linear(d, hidden), torch.nn.ReLU()]
        d = hidden
    mods.append(torch.nn.Linear(d, out_dim))
    return torch.nn.Sequential(*mods)


class MaterialField(torch.nn.Module):
    """World points -> glTF PBR material: ``base_color [N,3]`` and ``orm [N,3]`` (module docstring).

    Args:
        bounds: ``[2,3]`` world box the field covers (points outside are clamped to it).
        levels, features, min_res, max_res, table_size: of the :class:`GridEncoding`.
        hidden, layers: MLP width and hidden-layer count.
        min_roughness, max_roughness, min_metallic, max_metallic: output ranges.
        normal_offset: bound ``a`` of the normal perturbation (module docstring); 0 = no perturbation output.

    Example:
        >>> field = MaterialField(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), levels=4, max_res=32)
        >>> kd, orm = field(torch.zeros(7, 3))
        >>> kd.shape, orm.shape
        (torch.Size([7, 3]), torch.Size([7, 3]))
    """

    def __init__(self, bounds, levels: int = 12, features: int = 2, min_res: int = 16, max_res: int = 256,
                 table_size: int = 2 ** 17, hidden: int = 32, layers: int = 2, min_roughness: float = 0.08,
                 max_roughness: float = 1.0, min_metallic: float = 0.0, max_metallic: float = 1.0,
                 normal_offset: float = 0.0):
        super().__init__()
        bounds = float_tensor("bounds", bounds, "[2,3]", last_dim=3, ndims=(2,))
        if bounds.shape[0] != 2 or not bool((bounds[1] > bounds[0]).all()):
            raise InputError(f"bounds must be [[xmin,ymin,zmin],[xmax,ymax,zmax]] with max > min; got {bounds.tolist()}.")
        self.register_buffer("bounds", bounds.clone())
        self.encoding = GridEncoding(levels, features, min_res, max_res, table_size)
        if not normal_offset >= 0:
            raise InputError(f"normal_offset must be >= 0; got {normal_offset}.")
        self.normal_offset = float(normal_offset)
        self.net = mlp(self.encoding.out_dim, 9 if self.normal_offset > 0 else 6, hidden, layers)
        lo = torch.tensor([0.0, 0.0, 0.0, 1.0, min_roughness, min_metallic])
        hi = torch.tensor([1.0, 1.0, 1.0, 1.0, max_roughness, max_metallic])
        self.register_buffer("out_lo", lo)
        self.register_buffer("out_hi", hi)

    def normalize(self, points: torch.Tensor) -> torch.Tensor:
        """World points ``[N,3]`` -> unit-cube coordinates of :attr:`bounds`."""
        return (points - self.bounds[0]) / (self.bounds[1] - self.bounds[0])

    def forward(self, points: torch.Tensor):
        """``points [N,3]`` (world) -> ``(base_color [N,3], orm [N,3])`` in their valid ranges, plus the normal
        offset ``[N,3]`` as a third element when ``normal_offset > 0``."""
        points = float_tensor("points", points, "[N,3]", last_dim=3, ndims=(2,))
        if points.shape[0] == 0:
            z = points.new_zeros(0, 3)
            return (z, z.clone(), z.clone()) if self.normal_offset > 0 else (z, z.clone())
        raw = self.net(self.encoding(self.normalize(points)))
        y = self.out_lo + (self.out_hi - self.out_lo) * torch.sigmoid(raw[:, :6])
        if self.normal_offset > 0:
            return y[:, :3], y[:, 3:6], self.normal_offset * torch.tanh(raw[:, 6:])
        return y[:, :3], y[:, 3:]
