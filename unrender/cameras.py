"""Pinhole cameras in the OpenGL convention.

A :class:`Camera` holds a batch of ``B`` pinhole cameras: camera-to-world matrices
``c2w[B,4,4]`` (x right, y up, looking down -z, as NeRF-synthetic stores them),
focal lengths and principal points in pixels, the image size, and near/far planes.

Pixel convention: pixel ``(row, col)`` covers ``[col, col+1] x [row, row+1]``, its centre
is ``(col + 0.5, row + 0.5)``, row 0 is the *top* of the image (as in every image
file). Clip space follows OpenGL: ``ndc = clip.xyz / clip.w`` in ``[-1, 1]``, ndc y up.
Note that :func:`unrender.render.rasterize` writes row 0 at ndc ``y = -1``
(nvdiffrast's convention); :func:`unrender.render.render_mesh` flips its outputs so
that they come out top row first.

Example:
    >>> cam = Camera.from_fov(fov_x_deg=40.0, width=64, height=48,
    ...                       c2w=look_at((0, 0, 3), (0, 0, 0)))
    >>> cam.projection().shape
    torch.Size([1, 4, 4])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from .checks import float_tensor
from .errors import InputError


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0), dtype=torch.float32) -> torch.Tensor:
    """Camera-to-world matrix ``[1,4,4]`` (or ``[B,4,4]`` for ``eye[B,3]``) looking from ``eye`` at ``target``.

    The camera's -z axis points at ``target`` and its +y axis is as close to ``up`` as possible.
    """
    eye = torch.as_tensor(eye, dtype=dtype).reshape(-1, 3)
    target = torch.as_tensor(target, dtype=dtype).reshape(-1, 3).expand_as(eye)
    up = torch.as_tensor(up, dtype=dtype).reshape(-1, 3).expand_as(eye)
    back = torch.nn.functional.normalize(eye - target, dim=-1)  # camera +z
    right = torch.linalg.cross(up, back, dim=-1)
    # Looking straight along `up`: pick another up so that the frame stays defined.
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-8
    alt = torch.tensor([0.0, 0.0, 1.0], dtype=dtype).expand_as(eye)
    right = torch.where(degenerate, torch.linalg.cross(alt, back, dim=-1), right)
    right = torch.nn.functional.normalize(right, dim=-1)
    true_up = torch.linalg.cross(back, right, dim=-1)
    c2w = torch.eye(4, dtype=dtype).repeat(eye.shape[0], 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, true_up, back, eye
    return c2w


def orbit_poses(n: int, radius: float, elevation_deg=20.0, target=(0.0, 0.0, 0.0), seed: int | None = None,
                dtype=torch.float32) -> torch.Tensor:
    """``n`` camera-to-world matrices ``[n,4,4]`` on a sphere of ``radius`` looking at ``target``.

    With ``seed=None`` the azimuths are evenly spaced at fixed ``elevation_deg``; with a seed, directions
    are drawn uniformly from the upper hemisphere band ``[-10, 70]`` degrees of elevation.
    """
    if seed is None:
        az = torch.arange(n, dtype=torch.float64) * (2 * math.pi / max(n, 1))
        el = torch.full((n,), math.radians(elevation_deg), dtype=torch.float64)
    else:
        g = torch.Generator().manual_seed(seed)
        az = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
        el = torch.deg2rad(torch.rand(n, generator=g, dtype=torch.float64) * 80.0 - 10.0)
    eye = torch.stack([torch.cos(el) * torch.sin(az), torch.sin(el), torch.cos(el) * torch.cos(az)], -1) * radius
    eye = eye + torch.as_tensor(target, dtype=torch.float64)
    return look_at(eye, target, dtype=torch.float64).to(dtype)


@dataclass
class Camera:
    """A batch of ``B`` pinhole cameras sharing one image size.

    Attributes:
        c2w: camera-to-world ``[B,4,4]``, OpenGL axes (x right, y up, looking down -z).
        fx, fy: focal lengths in pixels ``[B]``.
        cx, cy: principal point in pixels ``[B]``, measured from the top-left image corner.
        width, height: image size in pixels.
        near, far: clip planes (world units) used by :meth:`projection`.
    """

    c2w: torch.Tensor
    fx: torch.Tensor
    fy: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    width: int
    height: int
    near: float = 0.05
    far: float = 100.0

    def __post_init__(self):
        self.c2w = float_tensor("c2w", self.c2w, "[B,4,4]", ndims=(2, 3))
        if self.c2w.dim() == 2:
            self.c2w = self.c2w[None]
        if self.c2w.shape[-2:] != (4, 4):
            raise InputError(f"c2w must have shape [B,4,4]; got {tuple(self.c2w.shape)}.")
        if not torch.isfinite(self.c2w).all():
            raise InputError("c2w holds NaN or infinite values; every camera pose must be finite.")
        b = self.c2w.shape[0]
        for name in ("fx", "fy", "cx", "cy"):
            v = torch.as_tensor(getattr(self, name), dtype=self.c2w.dtype, device=self.c2w.device).reshape(-1)
            if v.numel() == 1:
                v = v.expand(b).clone()
            if v.numel() != b:
                raise InputError(f"{name} must hold 1 or B={b} values; got {v.numel()}.")
            setattr(self, name, v)
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"image size must be positive; got {self.width}x{self.height}.")
        if not (0 < self.near < self.far):
            raise InputError(f"need 0 < near < far; got near={self.near}, far={self.far}.")

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_fov(cls, fov_x_deg: float, width: int, height: int, c2w, near=0.05, far=100.0) -> Camera:
        """Camera with horizontal field of view ``fov_x_deg`` and a centred principal point."""
        fx = 0.5 * width / math.tan(0.5 * math.radians(fov_x_deg))
        return cls(c2w, fx, fx, width / 2.0, height / 2.0, width, height, near, far)

    @classmethod
    def from_intrinsics(cls, K, width: int, height: int, c2w, near=0.05, far=100.0) -> Camera:
        """Camera from a 3x3 (or ``[B,3,3]``) OpenCV-style intrinsic matrix ``K``."""
        K = torch.as_tensor(K, dtype=torch.float32).reshape(-1, 3, 3)
        return cls(c2w, K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], width, height, near, far)

    # ----------------------------------------------------------------- properties
    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, idx) -> Camera:
        idx = torch.arange(len(self))[idx].reshape(-1)
        return replace(self, c2w=self.c2w[idx], fx=self.fx[idx], fy=self.fy[idx], cx=self.cx[idx], cy=self.cy[idx])

    def to(self, device=None, dtype=None) -> Camera:
        f = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
        return replace(self, c2w=f(self.c2w), fx=f(self.fx), fy=f(self.fy), cx=f(self.cx), cy=f(self.cy))

    @property
    def w2c(self) -> torch.Tensor:
        """World-to-camera ``[B,4,4]``."""
        return torch.linalg.inv(self.c2w)

    @property
    def center(self) -> torch.Tensor:
        """Camera centres in world space ``[B,3]``."""
        return self.c2w[:, :3, 3]

    def intrinsics(self) -> torch.Tensor:
        """OpenCV-style intrinsic matrices ``K[B,3,3]`` (pixels, y down)."""
        K = torch.zeros(len(self), 3, 3, dtype=self.c2w.dtype, device=self.c2w.device)
        K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = self.fx, self.fy, self.cx, self.cy, 1.0
        return K

    def projection(self) -> torch.Tensor:
        """OpenGL projection ``P[B,4,4]`` mapping camera space to clip space.

        ``x_ndc = (2 fx / W) x_c / (-z_c) + (2 cx - W) / W`` and ``y_ndc = (2 fy / H) y_c / (-z_c) + (H - 2 cy) / H``,
        so that pixel ``(cx, cy)`` (from the top-left corner) is the optical axis; depth maps
        ``[-near, -far]`` to ``ndc z in [-1, 1]``.
        """
        n, f = self.near, self.far
        P = torch.zeros(len(self), 4, 4, dtype=self.c2w.dtype, device=self.c2w.device)
        P[:, 0, 0] = 2 * self.fx / self.width
        P[:, 0, 2] = (self.width - 2 * self.cx) / self.width
        P[:, 1, 1] = 2 * self.fy / self.height
        P[:, 1, 2] = (2 * self.cy - self.height) / self.height
        P[:, 2, 2] = -(f + n) / (f - n)
        P[:, 2, 3] = -2 * f * n / (f - n)
        P[:, 3, 2] = -1.0
        return P

    def full_projection(self) -> torch.Tensor:
        """World-to-clip ``[B,4,4]`` = ``projection() @ w2c``."""
        return self.projection() @ self.w2c

    # ----------------------------------------------------------------- transforms
    def world_to_clip(self, points: torch.Tensor) -> torch.Tensor:
        """Homogeneous clip coordinates ``[B,N,4]`` of world points ``[N,3]`` or ``[B,N,3]``."""
        points = points if points.dim() == 3 else points[None].expand(len(self), -1, -1)
        homo = torch.cat([points, torch.ones_like(points[..., :1])], -1)
        return homo @ self.full_projection().transpose(1, 2)

    def clip_to_world(self, clip: torch.Tensor) -> torch.Tensor:
        """World points ``[B,N,3]`` of clip coordinates ``[B,N,4]`` (inverse of :meth:`world_to_clip`)."""
        homo = clip @ torch.linalg.inv(self.full_projection()).transpose(1, 2)
        return homo[..., :3] / homo[..., 3:]

    def world_to_pixel(self, points: torch.Tensor) -> torch.Tensor:
        """Pixel coordinates ``[B,N,2]`` (x right, y down, from the top-left corner) and nothing else."""
        clip = self.world_to_clip(points)
        ndc = clip[..., :2] / clip[..., 3:]
        x = (ndc[..., 0] + 1) * 0.5 * self.width
        y = (1 - ndc[..., 1]) * 0.5 * self.height
        return torch.stack([x, y], -1)

    def rays(self, pixels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Ray origins and unit directions in world space.

        Args:
            pixels: ``[B,N,2]`` pixel positions (x, y from the top-left corner); default all pixel
                centres, giving outputs of shape ``[B,H,W,3]``.
        Returns:
            ``(origins, directions)``, each ``[B,N,3]`` or ``[B,H,W,3]``.
        """
        dtype, dev = self.c2w.dtype, self.c2w.device
        if pixels is None:
            ys, xs = torch.meshgrid(torch.arange(self.height, dtype=dtype, device=dev) + 0.5,
                                    torch.arange(self.width, dtype=dtype, device=dev) + 0.5, indexing="ij")
            pix = torch.stack([xs, ys], -1)[None].expand(len(self), -1, -1, -1)
        else:
            pix = pixels
        view = lambda v: v.reshape(-1, *([1] * (pix.dim() - 2)))  # noqa: E731
        d_cam = torch.stack([(pix[..., 0] - view(self.cx)) / view(self.fx),
                             -(pix[..., 1] - view(self.cy)) / view(self.fy),
                             -torch.ones_like(pix[..., 0])], -1)
        R = self.c2w[:, :3, :3].reshape(len(self), *([1] * (pix.dim() - 2)), 3, 3)
        d = torch.nn.functional.normalize((R @ d_cam[..., None])[..., 0], dim=-1)
        o = self.center.reshape(len(self), *([1] * (pix.dim() - 2)), 3).expand_as(d)
        return o, d
