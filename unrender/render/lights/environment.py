"""Image-based lighting from a learnable HDR cube map, shaded with the split-sum approximation.

The light is a distant radiance cube map ``base[6,R,R,3]`` (an ``nn.Parameter``). Shading a
glTF metallic-roughness material needs two convolutions of it, precomputed by :meth:`build`
(call it after every change of ``base``, e.g. once per optimisation step):

**Specular** (Karis 2013, split sum). The outgoing specular radiance is approximated by

    L_spec(v) = prefiltered(r, roughness) (F0 A(n.v, roughness) + B(n.v, roughness)),   r = 2 (n.v) n - v

with ``(A, B)`` from :func:`.brdf_lut.brdf_lut` and the radiance prefiltered by the GGX lobe
under Karis' ``n = v = r`` assumption:

    prefiltered(r, rho) = sum_k L(l_k) (r.l_k) / sum_k (r.l_k),
    l_k = 2 (r.h_k) h_k - r,  h_k ~ D_alpha(h) (r.h), alpha = rho^2,   (r.l_k > 0)

with ``h_k`` a fixed Hammersley set. Each sample reads the box-filtered mip pyramid of ``base``
at the level whose texel solid angle matches the sample's, ``1 / (K pdf(l_k))`` with
``pdf = D / 4`` (filtered importance sampling, Colbert & Krivanek 2007), so few samples give a
smooth result; ``K_i = max(num_samples, min(256, 2^17 / (6 R_i^2)))``, so coarse levels get
more samples at the same cost. Where the level is coarse and its lobe wide enough that the
dense sum is cheap (``6 R_i^2 x 6 S_i^2 <= 2^24``, ``S_i`` the coarsest pyramid resolution
``>= 2 / alpha_i``, a texel no wider than ~0.8 of the lobe's half width) the integral is evaluated exactly instead, over all texels ``l_j`` of
that pyramid level, with ``n.h = sqrt((1 + r.l) / 2)`` and exact texel solid angles ``dw_j``:

    prefiltered(r, rho) = sum_j L_j D(h_j) (r.l_j)_+ dw_j / sum_j D(h_j) (r.l_j)_+ dw_j

The chain has ``num_levels`` levels at roughness ``rho_i = rho_0 (1 / rho_0)^{i / (L-1)}``
(geometric from ``rho_0 = 0.08`` to 1, so the lobe width grows about 2.7x per level) and
resolution ``R_i = min(R, max(min_res, ceil(1.55 / alpha_i)))``: a texel (about ``2 / R_i`` rad)
no wider than the lobe's half width at half maximum (``~1.29 alpha`` in reflected directions),
so a level is never finer than its blur needs; this keeps the build cheap (R = 512: levels of
89, 33, 16, 16, 16 texels). Level 0 is ``base`` itself: at ``rho_0`` the GGX lobe is only a
few texels wide, below the bilinear filter's footprint. A lookup at roughness
``rho`` blends the two levels around ``i(rho) = log(rho / rho_0) / log(rho_1 / rho_0)``
(linear in the level index, differentiable w.r.t. roughness).

**Diffuse.** ``E(n) = integral L(w) max(n.w, 0) dw`` is computed at ``diffuse_res`` by a dense
sum over the texels of the pyramid level of that resolution, with exact texel solid angles
``dw_j``, normalised so that a constant environment is reproduced exactly:

    irradiance_cube(n) = pi sum_j L_j max(n.w_j, 0) dw_j / sum_j max(n.w_j, 0) dw_j

The outgoing radiance is then ``occlusion (kd / pi E(n) + L_spec)``. Everything is plain
autograd, so gradients reach ``base``, normals, view directions and the material.
"""

from __future__ import annotations

import math

import torch

from ...checks import float_tensor
from ...errors import InputError, UnrenderError
from ..cubemap import cube_directions, cube_to_latlong, latlong_to_cube
from ..mipmap import build_mip
from ..shading.bsdf import MIN_ROUGHNESS, ggx_ndf
from ..texture import texture
from .base import Light, check_material, check_points_normals, material_colors, reflect
from .brdf_lut import brdf_lut, ggx_sample_half_vectors, hammersley, lookup_brdf_lut


def cube_texel_solid_angles(resolution: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Exact solid angle ``[6,R,R]`` of every cube-map texel (they sum to ``4 pi``).

    For a texel spanning ``[x0, x1] x [y0, y1]`` of a face at unit distance,
    ``dw = F(x1, y1) - F(x0, y1) - F(x1, y0) + F(x0, y0)`` with ``F(x, y) = atan2(x y, sqrt(x^2 + y^2 + 1))``.

    Example:
        >>> bool(abs(cube_texel_solid_angles(8).sum() - 4 * math.pi) < 1e-4)
        True
    """
    r = int(resolution)
    e = torch.linspace(-1.0, 1.0, r + 1, dtype=torch.float64)
    y, x = torch.meshgrid(e, e, indexing="ij")
    f = torch.atan2(x * y, torch.sqrt(x * x + y * y + 1.0))
    face = f[1:, 1:] - f[:-1, 1:] - f[1:, :-1] + f[:-1, :-1]
    return face.abs().expand(6, r, r).to(device=device, dtype=dtype)


def _tangent_frames(n: torch.Tensor):
    """Two unit tangents ``t, b`` ``[...,3]`` completing ``n`` to a right-handed frame."""
    up = torch.zeros_like(n)
    use_x = n[..., 2].abs() > 0.999
    up[..., 0] = use_x.to(n.dtype)
    up[..., 2] = (~use_x).to(n.dtype)
    t = torch.nn.functional.normalize(torch.linalg.cross(up, n, dim=-1), dim=-1)
    return t, torch.linalg.cross(n, t, dim=-1)


def _lookup(cube: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Bilinear cube-map lookup of ``cube[6,R,R,C]`` at ``dirs[...,3]`` -> ``[...,C]``."""
    out = texture(cube, dirs.reshape(1, 1, -1, 3).to(cube.dtype), filter="linear", boundary="cube")
    return out.reshape(dirs.shape[:-1] + (cube.shape[-1],))


class EnvironmentLight(Light):
    """Distant lighting from an HDR cube map with split-sum specular (module docstring).

    Args:
        base: initial cube map ``[6,R,R,3]`` (linear radiance), or None for a constant ``init``.
        resolution: ``R`` when ``base`` is None (512 for quality; tests use small maps).
        init: constant radiance of the default map.
        num_levels: levels of the prefiltered specular chain (roughness 0.08 ... 1).
        min_res: smallest face resolution of the chain.
        diffuse_res: face resolution of the irradiance cube.
        num_samples: GGX samples per texel of the prefiltered levels.
        lut_resolution: size of the split-sum table.

    Example:
        >>> light = EnvironmentLight(resolution=8)
        >>> light.build()
        >>> n = torch.tensor([[0.0, 0.0, 1.0]])
        >>> light.irradiance(torch.zeros(1, 3), n)   # constant 0.5: E = pi / 2
        tensor([[1.5708, 1.5708, 1.5708]], grad_fn=<MulBackward0>)
    """

    def __init__(self, base=None, resolution: int = 512, init: float = 0.5, num_levels: int = 6, min_res: int = 16,
                 diffuse_res: int = 16, num_samples: int = 12, lut_resolution: int = 128):
        super().__init__()
        if base is None:
            if isinstance(resolution, bool) or int(resolution) != resolution or resolution < 1:
                raise InputError(f"resolution must be a positive integer; got {resolution!r}.")
            base = torch.full((6, int(resolution), int(resolution), 3), float(init))
        base = float_tensor("base", base, "[6,R,R,3]", last_dim=3, ndims=(4,))
        if base.shape[0] != 6 or base.shape[1] != base.shape[2]:
            raise InputError(f"base must be a cube map [6,R,R,3]; got {tuple(base.shape)}.")
        for name, val, lo in (("num_levels", num_levels, 2), ("min_res", min_res, 1), ("diffuse_res", diffuse_res, 1),
                              ("num_samples", num_samples, 1), ("lut_resolution", lut_resolution, 2)):
            if isinstance(val, bool) or int(val) != val or val < lo:
                raise InputError(f"{name} must be an integer >= {lo}; got {val!r}.")
        self.base = torch.nn.Parameter(base.clone())
        self.num_levels, self.min_res, self.diffuse_res = int(num_levels), int(min_res), int(diffuse_res)
        self.num_samples, self.lut_resolution = int(num_samples), int(lut_resolution)
        self.specular: list[torch.Tensor] | None = None
        self.diffuse: torch.Tensor | None = None
        self._built_version = None

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_latlong(cls, hdr, resolution: int = 512, **kwargs) -> "EnvironmentLight":
        """Make a light from a lat-long (equirectangular) HDR image ``hdr[H,W,3]`` (row 0 = up, +y).

        The map is resampled with :func:`unrender.render.cubemap.latlong_to_cube`; ``kwargs`` go to
        the constructor. Call :meth:`build` before shading.

        Example:
            >>> light = EnvironmentLight.from_latlong(torch.ones(16, 32, 3), resolution=8)
            >>> tuple(light.base.shape)
            (6, 8, 8, 3)
        """
        hdr = float_tensor("hdr", hdr, "[H,W,3]", last_dim=3, ndims=(3,))
        with torch.no_grad():
            cube = latlong_to_cube(hdr, resolution)
        return cls(cube, **kwargs)

    def to_latlong(self, height: int, width: int) -> torch.Tensor:
        """The base map as a lat-long image ``[H,W,3]`` (row 0 = up), differentiable w.r.t. ``base``.

        Example:
            >>> EnvironmentLight(resolution=8).to_latlong(8, 16).shape
            torch.Size([8, 16, 3])
        """
        return cube_to_latlong(self.base, height, width)

    def radiance(self, directions) -> torch.Tensor:
        """Radiance ``[...,3]`` of ``base`` (bilinear) arriving from unit ``directions[...,3]``."""
        d = float_tensor("directions", directions, "[...,3]", last_dim=3)
        return _lookup(self.base, d)

    # ------------------------------------------------------------------ precomputation
    def level_roughness(self) -> list[float]:
        """Roughness ``rho_i`` of each level of the specular chain (module docstring)."""
        ratio = (1.0 / MIN_ROUGHNESS) ** (1.0 / (self.num_levels - 1))
        return [MIN_ROUGHNESS * ratio ** i for i in range(self.num_levels)]

    def level_resolutions(self) -> list[int]:
        """Face resolution ``R_i`` of each level of the specular chain (module docstring)."""
        r = self.base.shape[1]
        return [r] + [min(r, max(self.min_res, math.ceil(1.55 / rho ** 2))) for rho in self.level_roughness()[1:]]

    def _source_level(self, stack, need: int) -> int:
        """Index of the coarsest pyramid level with at least ``need`` texels per face (0 if none)."""
        ok = [i for i in range(stack.num_levels) if int(stack.heights[i]) >= need]
        return ok[-1] if ok else 0

    def _prefilter(self, stack, res: int, roughness: float) -> torch.Tensor:
        alpha = roughness ** 2
        src = stack.levels[self._source_level(stack, math.ceil(2.0 / alpha))]
        if (6 * res * res) * (6 * src.shape[1] ** 2) <= 1 << 24:
            return self._prefilter_dense(src, res, alpha)
        samples = max(self.num_samples, min(256, (1 << 17) // (6 * res * res)))
        return self._prefilter_sampled(stack, res, alpha, samples)

    def _prefilter_dense(self, src: torch.Tensor, res: int, alpha: float) -> torch.Tensor:
        dev, dt = src.device, src.dtype
        s = src.shape[1]
        w_in = cube_directions(s, dev, dt).reshape(-1, 3)
        d_omega = cube_texel_solid_angles(s, dev, dt).reshape(-1)
        r = cube_directions(res, dev, dt).reshape(-1, 3)
        c = r @ w_in.transpose(0, 1)                                                 # r.l  [No,Ni]
        nh = torch.sqrt(((1.0 + c) * 0.5).clamp_min(0.0))
        w = ggx_ndf(nh, torch.tensor(alpha, dtype=dt, device=dev)) * c.clamp_min(0.0) * d_omega
        out = (w @ src.reshape(-1, src.shape[-1])) / w.sum(1, keepdim=True)
        return out.reshape(6, res, res, src.shape[-1])

    def _prefilter_sampled(self, stack, res: int, alpha: float, samples: int) -> torch.Tensor:
        base = self.base
        dev, dt = base.device, base.dtype
        a = torch.tensor(alpha, dtype=torch.float64)
        h = ggx_sample_half_vectors(hammersley(samples), a)                           # [K,3], n = v = z
        l = 2.0 * h[:, 2:3] * h - torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        keep = l[:, 2] > 1e-6
        pdf = ggx_ndf(h[keep, 2], a) / 4.0                                           # pdf of l (v.h = n.h)
        omega_sample = 1.0 / (samples * pdf)
        omega_texel = 4.0 * math.pi / (6.0 * base.shape[1] ** 2)
        lod = (0.5 * torch.log2(omega_sample / omega_texel)).clamp_min(0.0)
        l = l[keep].to(device=dev, dtype=dt)
        w = l[:, 2]
        n = cube_directions(res, dev, dt)                                            # [6,r,r,3]
        t, b = _tangent_frames(n)
        dirs = l[:, 0, None] * t[..., None, :] + l[:, 1, None] * b[..., None, :] + l[:, 2, None] * n[..., None, :]
        k = l.shape[0]
        bias = lod.to(device=dev, dtype=dt).expand(1, 6 * res * res, k)
        vals = texture(None, dirs.reshape(1, 6 * res * res, k, 3), mip=stack, mip_level_bias=bias,
                       filter="linear-mipmap-linear", boundary="cube")                 # [1,N,K,3]
        out = (vals[0] * w[:, None]).sum(1) / w.sum()
        return out.reshape(6, res, res, 3)

    def _irradiance_cube(self, stack) -> torch.Tensor:
        res_base = self.base.shape[1]
        level = min(range(stack.num_levels), key=lambda i: abs(int(stack.heights[i]) - self.diffuse_res))
        src = stack.levels[level]                                                    # [6,s,s,3]
        s = src.shape[1]
        dev, dt = src.device, src.dtype
        w_in = cube_directions(s, dev, dt).reshape(-1, 3)
        d_omega = cube_texel_solid_angles(s, dev, dt).reshape(-1)
        out_res = min(self.diffuse_res, res_base)
        n_out = cube_directions(out_res, dev, dt).reshape(-1, 3)
        m = (n_out @ w_in.transpose(0, 1)).clamp_min(0.0) * d_omega                 # [Nout,Nin]
        e = (m @ src.reshape(-1, 3)) / m.sum(1, keepdim=True)
        return e.reshape(6, out_res, out_res, 3)

    def build(self) -> None:
        """Precompute the prefiltered specular chain and the irradiance cube from ``base``.

        Sets ``self.specular`` (list of ``[6,R_i,R_i,3]``, level 0 = ``base``) and
        ``self.diffuse`` (``[6,D,D,3]``, the irradiance divided by pi). Both stay connected to
        ``base`` in the autograd graph: rebuild after every change of ``base``.

        Example:
            >>> light = EnvironmentLight(resolution=32, num_levels=3)
            >>> light.build()
            >>> [tuple(c.shape[1:3]) for c in light.specular]
            [(32, 32), (20, 20), (16, 16)]
        """
        stack = build_mip(self.base)
        chain = [self.base]
        for res, rho in zip(self.level_resolutions()[1:], self.level_roughness()[1:]):
            chain.append(self._prefilter(stack, res, rho))
        self.specular = chain
        self.diffuse = self._irradiance_cube(stack)
        self._built_version = self.base._version

    def _check_built(self):
        if self.specular is None:
            raise UnrenderError("EnvironmentLight has not been built; call light.build() before shading.")
        if self.base._version != self._built_version:
            raise UnrenderError("EnvironmentLight.base changed since build(); call light.build() again after "
                                "every update of the light (e.g. after optimizer.step()).")

    # ------------------------------------------------------------------ shading
    def irradiance(self, points, normals) -> torch.Tensor:
        """``E[...,3] = pi * irradiance_cube(n)`` (module docstring); needs :meth:`build`."""
        self._check_built()
        points, normals = check_points_normals(points, normals)
        return math.pi * _lookup(self.diffuse, normals)

    def prefiltered(self, directions, roughness) -> torch.Tensor:
        """GGX-prefiltered radiance ``[...,3]`` at ``directions[...,3]`` and ``roughness[...,1]``.

        Blends the chain's levels with hat weights ``max(0, 1 - |i(rho) - i|)`` (module docstring);
        roughness is clamped to [0.08, 1].
        """
        self._check_built()
        d = float_tensor("directions", directions, "[...,3]", last_dim=3)
        rough = float_tensor("roughness", roughness, "[...,1]", dtype=d.dtype).clamp(MIN_ROUGHNESS, 1.0)
        step = math.log(self.level_roughness()[1] / MIN_ROUGHNESS)
        f = torch.log(rough / MIN_ROUGHNESS) / step                                  # [...,1] in [0, L-1]
        flat_d, flat_f = d.reshape(-1, 3), f.reshape(-1, 1)
        out = flat_d.new_zeros(flat_d.shape)
        for i, cube in enumerate(self.specular):
            w = (1.0 - (flat_f - i).abs()).clamp_min(0.0)
            # Each direction touches only the two levels around its roughness: look up just those.
            rows = (w[:, 0] > 0).nonzero().squeeze(1)
            if rows.numel():
                out = out.index_add(0, rows, w[rows] * _lookup(cube, flat_d[rows]).to(d.dtype))
        return out.reshape(d.shape)

    def shade(self, points, normals, view_dirs, base_color, roughness, metallic, occlusion=None) -> torch.Tensor:
        """``[...,3] = occlusion (kd / pi E(n) + prefiltered(r, rho) (F0 A + B))`` (module docstring).

        Example:
            >>> light = EnvironmentLight(resolution=8); light.build()
            >>> n = torch.tensor([[0.0, 0.0, 1.0]])
            >>> light.shade(torch.zeros(1, 3), n, n, torch.ones(1, 3), torch.ones(1, 1), torch.zeros(1, 1)).shape
            torch.Size([1, 3])
        """
        self._check_built()
        points, normals = check_points_normals(points, normals)
        view_dirs, base_color, roughness, metallic, occlusion = check_material(
            normals, view_dirs, base_color, roughness, metallic, occlusion)
        kd, f0 = material_colors(base_color, metallic)
        diffuse = kd * _lookup(self.diffuse, normals).to(normals.dtype)
        refl = torch.nn.functional.normalize(reflect(view_dirs, normals), dim=-1, eps=1e-12)
        shape = torch.broadcast_shapes(refl.shape[:-1] + (1,), roughness.shape)
        spec_l = self.prefiltered(refl.expand(shape[:-1] + (3,)), roughness.expand(shape))
        n_dot_v = (normals * view_dirs).sum(-1, keepdim=True).clamp(1e-4, 1.0)
        lut = brdf_lut(self.lut_resolution, device=normals.device)
        ab = lookup_brdf_lut(n_dot_v, roughness.clamp(MIN_ROUGHNESS, 1.0), lut)
        spec = spec_l * (f0 * ab[..., 0:1] + ab[..., 1:2])
        return (diffuse + spec) * occlusion
