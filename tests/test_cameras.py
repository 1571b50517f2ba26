"""Camera: projection conventions, round trips, rays, bad input."""

import math

import pytest
import torch

from unrender.cameras import Camera, look_at, orbit_poses
from unrender.errors import InputError


def test_look_at_is_orthonormal_and_points_at_target():
    c2w = look_at(torch.tensor([[1.0, 2.0, 3.0], [0.0, 5.0, 0.0]]), (0.2, 0.1, -0.3))
    R = c2w[:, :3, :3]
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-6)
    fwd = -R[:, :, 2]
    to_target = torch.nn.functional.normalize(torch.tensor([0.2, 0.1, -0.3]) - c2w[:, :3, 3], dim=-1)
    assert torch.allclose(fwd, to_target, atol=1e-6)  # also when looking straight down (second camera)


def test_principal_point_projects_the_optical_axis():
    cam = Camera(look_at((0, 0, 4.0)), fx=50.0, fy=60.0, cx=20.0, cy=10.0, width=64, height=48)
    pix = cam.world_to_pixel(torch.tensor([[0.0, 0.0, 0.0], [0.4, 0.0, 0.0], [0.0, 0.4, 0.0]]))[0]
    assert torch.allclose(pix[0], torch.tensor([20.0, 10.0]), atol=1e-4)
    assert torch.allclose(pix[1], torch.tensor([20.0 + 50 * 0.1, 10.0]), atol=1e-4)  # x right
    assert torch.allclose(pix[2], torch.tensor([20.0, 10.0 - 60 * 0.1]), atol=1e-4)  # y up = rows up


def test_fov_and_intrinsics_agree():
    a = Camera.from_fov(60.0, 100, 80, look_at((0, 0, 3.0)))
    assert math.isclose(a.fx.item(), 50 / math.tan(math.radians(30)), rel_tol=1e-6)
    b = Camera.from_intrinsics(a.intrinsics()[0], 100, 80, a.c2w)
    assert torch.allclose(a.projection(), b.projection())


def test_clip_round_trip_and_depth_range():
    cam = Camera.from_fov(50, 64, 64, orbit_poses(4, 3.0, seed=1), near=0.5, far=10.0).to(dtype=torch.float64)
    pts = torch.rand(20, 3, dtype=torch.float64) - 0.5
    assert torch.allclose(cam.clip_to_world(cam.world_to_clip(pts)), pts.expand(4, -1, -1), atol=1e-9)
    on_axis = cam.center + (-cam.c2w[:, :3, 2]) * 0.5  # a point at the near plane
    clip = (torch.cat([on_axis, torch.ones(4, 1, dtype=torch.float64)], -1)[:, None] @ cam.full_projection().transpose(1, 2))
    assert torch.allclose(clip[..., 2] / clip[..., 3], torch.full((4, 1), -1.0, dtype=torch.float64))


def test_rays_hit_the_projected_points():
    cam = Camera(look_at((0.3, 1.0, 2.5)), fx=40.0, fy=42.0, cx=30.0, cy=25.0, width=64, height=48).to(dtype=torch.float64)
    pts = torch.rand(10, 3, dtype=torch.float64) - 0.5
    o, d = cam.rays(cam.world_to_pixel(pts))
    to_pts = torch.nn.functional.normalize(pts - o[0], dim=-1)
    assert torch.allclose(d[0], to_pts, atol=1e-9)
    o, d = cam.rays()
    assert d.shape == (1, 48, 64, 3) and torch.allclose(d.norm(dim=-1), torch.ones(1, 48, 64, dtype=torch.float64))


def test_indexing_and_bad_input():
    cam = Camera.from_fov(40, 32, 32, orbit_poses(5, 2.0))
    assert len(cam[1:3]) == 2 and torch.equal(cam[2].c2w[0], cam.c2w[2])
    bad = torch.eye(4)[None].clone()
    bad[0, 0, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        Camera.from_fov(40, 32, 32, bad)
    with pytest.raises(InputError, match="c2w"):
        Camera.from_fov(40, 32, 32, torch.eye(3))
    with pytest.raises(InputError, match="near"):
        Camera.from_fov(40, 32, 32, torch.eye(4), near=0.0)
