"""Visual hull from rendered silhouettes: conventions, containment, accuracy, bounds and bad input."""

import math

import numpy as np
import pytest
import torch

from unrender.cameras import Camera, look_at, orbit_poses
from unrender.errors import InputError
from unrender.geometry.inside import inside_mesh
from unrender.geometry.primitives import box, icosphere
from unrender.metrics.geometry import evaluate_meshes, is_watertight, sample_surface
from unrender.recon.visual_hull import carve, estimate_bounds, visual_hull
from unrender.render.render_mesh import render_mesh

RES = 64  # voxels along the longest side of the box


def signed_volume(v, f):
    v = v.double()
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float((a * torch.linalg.cross(b, c, dim=-1)).sum() / 6)


def silhouettes(mesh, n=12, size=96, seed=0):
    cam = Camera.from_fov(40, size, size, orbit_poses(n, 3.0, seed=seed))
    return cam, render_mesh(mesh, cam, shading="albedo").alpha


def test_pixel_convention_of_masks_and_projection():
    # A small sphere up and to the right of the optical axis must land up and right in the mask, where
    # world_to_pixel puts its centre (pixel (0, 0) = top-left corner).
    centre = torch.tensor([0.35, 0.25, 0.0])
    ball = icosphere(2, radius=0.1)
    ball.vertices = ball.vertices + centre
    cam = Camera.from_fov(40, 64, 48, look_at((0.0, 0.0, 3.0)))
    mask = render_mesh(ball, cam, shading="albedo").alpha[0, ..., 0]
    x, y = cam.world_to_pixel(centre[None])[0, 0].tolist()
    assert x > 32 and y < 24
    assert mask[int(y), int(x)] == 1.0
    rows, cols = torch.nonzero(mask > 0.5, as_tuple=True)
    assert abs(float(cols.double().mean()) + 0.5 - x) < 0.5 and abs(float(rows.double().mean()) + 0.5 - y) < 0.5
    # The hull of a single view keeps the voxel at the centre and carves the mirrored position.
    field = carve(cam, mask[None, ..., None], [[-0.6, -0.6, -0.6], [0.6, 0.6, 0.6]], resolution=24)
    ijk = lambda p: tuple(((torch.tensor(p) - field.origin) / field.step).floor().long().tolist())  # noqa: E731
    assert field.values[ijk([0.35, 0.25, 0.0])] == 1.0
    assert field.values[ijk([0.35, -0.25, 0.0])] == 0.0 and field.values[ijk([-0.35, 0.25, 0.0])] == 0.0


def test_sphere_hull_contains_and_matches_sphere():
    sphere = icosphere(4, radius=0.5)
    cam, masks = silhouettes(sphere)
    hull = visual_hull(cam, masks, resolution=RES)
    assert is_watertight(hull.faces) and signed_volume(hull.vertices, hull.faces) > 0
    m = evaluate_meshes(hull, sphere, n_points=20000)
    assert m.f_score[0.02] > 0.9
    assert m.chamfer_l1 < 0.01
    assert signed_volume(hull.vertices, hull.faces) >= signed_volume(sphere.vertices, sphere.faces) * 0.99
    # Containment: points one voxel below the sphere's surface are all inside the hull.
    voxel = 1.1 / RES
    p, n = sample_surface(sphere.vertices, sphere.faces, 4000, seed=0)
    assert bool(inside_mesh(hull.vertices, hull.faces, p - voxel * n).all())


def test_offcentre_box_hull_contains_box():
    size, centre = (0.6, 0.3, 0.45), (0.1, -0.05, 0.08)
    cube = box(size, subdivisions=4, center=centre)
    cam, masks = silhouettes(cube, seed=0)
    bounds = estimate_bounds(cam, masks)
    lo, hi = cube.vertices.min(0).values, cube.vertices.max(0).values
    assert bool((bounds[0] < lo).all() and (bounds[1] > hi).all())
    assert bool(((bounds[1] - bounds[0]) < 2.0 * (hi - lo)).all())  # tight, not the whole camera rig
    hull = visual_hull(cam, masks, resolution=RES)
    assert signed_volume(hull.vertices, hull.faces) > 0
    assert signed_volume(hull.vertices, hull.faces) >= math.prod(size) * 0.98
    voxel = float((bounds[1] - bounds[0]).max()) / RES
    p, n = sample_surface(cube.vertices, cube.faces, 4000, seed=1)
    assert float(inside_mesh(hull.vertices, hull.faces, p - 1.5 * voxel * n).float().mean()) > 0.995
    m = evaluate_meshes(hull, cube, n_points=20000)
    assert m.chamfer_l1 < 0.05  # the excess over the box is the gaps between the views, not an error
    # With explicit bounds the hull is the same shape.
    hull_b = visual_hull(cam, masks, bounds=[[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]], resolution=RES)
    assert abs(signed_volume(hull_b.vertices, hull_b.faces) / signed_volume(hull.vertices, hull.faces) - 1) < 0.05


def test_views_outside_the_image_do_not_carve():
    # A camera that has the box in front of it but outside its image sees nothing of it: its empty mask
    # must not carve the box.
    cube = box((0.5, 0.5, 0.5))
    cam, masks = silhouettes(cube, n=6, size=64, seed=2)
    away = Camera.from_fov(40, 64, 64, look_at((0.0, 0.0, 3.0), target=(2.5, 0.0, 0.0)))
    both = Camera(torch.cat([cam.c2w, away.c2w]), cam.fx[0], cam.fy[0], cam.cx[0], cam.cy[0], 64, 64)
    masks_b = torch.cat([masks, torch.zeros(1, 64, 64, 1)])
    v0 = signed_volume(*(lambda h: (h.vertices, h.faces))(visual_hull(cam, masks, resolution=48)))
    v1 = signed_volume(*(lambda h: (h.vertices, h.faces))(visual_hull(both, masks_b, resolution=48)))
    assert v1 == pytest.approx(v0, rel=0.02)


def test_bad_input_is_refused():
    cam, masks = silhouettes(icosphere(2), n=4, size=32)
    with pytest.raises(InputError):
        visual_hull(cam, masks[:3])
    with pytest.raises(InputError):
        visual_hull(cam, masks[:, :16])
    with pytest.raises(InputError):
        visual_hull(cam, torch.zeros_like(masks))
    with pytest.raises(InputError):
        visual_hull(cam, masks, bounds=[[1, 1, 1], [0, 0, 0]])
    # uint8 and [N,H,W] masks are accepted.
    hull = visual_hull(cam, (masks[..., 0] * 255).round().to(torch.uint8), resolution=24)
    assert hull.num_faces > 0 and np.isfinite(hull.vertices.numpy()).all()
