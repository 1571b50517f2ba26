"""Geometry metrics, inside/outside tests, distances and image metrics on analytic cases."""

import math

import numpy as np
import pytest
import torch

from unrender.errors import InputError
from unrender.geometry.inside import closest_points, inside_mesh, signed_distance, winding_number
from unrender.geometry.primitives import box, icosphere, torus
from unrender.mesh import Mesh
from unrender.metrics.geometry import (chamfer_distance, evaluate_meshes, f_score, is_watertight,
                                       normal_consistency, sample_surface, volume_iou)
from unrender.metrics.image import composite, mask_iou, psnr, ssim


def bumpy_sphere(seed=0):
    """A non-convex closed mesh: an icosphere with random radial bumps (star-shaped, so still closed)."""
    s = icosphere(3, radius=0.5)
    g = torch.Generator().manual_seed(seed)
    scale = 1 + 0.35 * (torch.rand(s.num_vertices, 1, generator=g) - 0.5)
    return Mesh(vertices=s.vertices * scale, faces=s.faces)


def brute_distance(v, f, p):
    """Reference point-triangle distance: min of |plane distance| (foot inside) and the 3 edge distances."""
    tri = v[f]
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    out = np.empty(len(p))
    for i, q in enumerate(p):
        h = ((q - a) * n).sum(1)
        foot = q - h[:, None] * n
        inside = np.ones(len(f), dtype=bool)
        for x, y in ((a, b), (b, c), (c, a)):
            inside &= (np.cross(y - x, foot - x) * n).sum(1) >= 0
        best = np.where(inside, np.abs(h), np.inf)
        for x, y in ((a, b), (b, c), (c, a)):
            d = y - x
            t = np.clip(((q - x) * d).sum(1) / (d * d).sum(1), 0, 1)
            best = np.minimum(best, np.linalg.norm(x + t[:, None] * d - q, axis=1))
        out[i] = best.min()
    return out


# ----------------------------------------------------------------------------------- inside / winding


@pytest.mark.parametrize("mesh", [torus(0.35, 0.12), bumpy_sphere(), box((0.8, 0.5, 0.3), subdivisions=3)],
                         ids=["torus", "bumpy_sphere", "box"])
def test_inside_mesh_matches_winding_number(mesh):
    g = torch.Generator().manual_seed(1)
    pts = (torch.rand(4000, 3, generator=g, dtype=torch.float64) - 0.5) * 1.6
    w = winding_number(mesh.vertices, mesh.faces, pts)
    away = (w - w.round()).abs() < 1e-6  # off the surface the winding number is an integer
    assert away.float().mean() > 0.95
    inside = inside_mesh(mesh.vertices, mesh.faces, pts)
    assert torch.equal(inside[away], w[away].round() == 1)
    assert 0.02 < inside.float().mean() < 0.6


def test_inside_mesh_exact_on_edge_and_vertex_hits():
    # Every axis ray from these grid points passes exactly through vertices and edges of the box.
    m = box((1.0, 1.0, 1.0), subdivisions=4)
    g = torch.linspace(-0.75, 0.75, 13, dtype=torch.float64)
    pts = torch.cartesian_prod(g, g, g)
    w = winding_number(m.vertices, m.faces, pts)
    away = (w - w.round()).abs() < 1e-9
    inside = inside_mesh(m.vertices, m.faces, pts)
    assert torch.equal(inside[away], w[away].round() == 1)
    assert int((w[away].round() == 1).sum()) == 7 ** 3  # interior grid coordinates -0.375, -0.25, ..., 0.375


def test_inside_mesh_ignores_orientation_and_split_vertices():
    s = icosphere(2, radius=0.5)
    # Inward faces, and every face given its own three vertices (as glTF seams do).
    v = s.vertices[s.faces.flip(1)].reshape(-1, 3)
    f = torch.arange(v.shape[0]).reshape(-1, 3)
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.2, -0.3], [0.6, 0.0, 0.0], [0.0, 0.0, -2.0]])
    assert inside_mesh(v, f, pts).tolist() == [True, True, False, False]


def test_signed_distance_sphere_within_sag():
    s = icosphere(4, radius=0.5)
    v = s.vertices.double()
    tri = v[s.faces]
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    plane_dist = ((tri[:, 0] * torch.nn.functional.normalize(n, dim=-1)).sum(-1)).abs()
    sag = 0.5 - float(plane_dist.min())  # the mesh lies between the spheres of radii 0.5 - sag and 0.5
    g = torch.Generator().manual_seed(2)
    pts = (torch.rand(5000, 3, generator=g, dtype=torch.float64) - 0.5) * 2.0
    sd = signed_distance(v, s.faces, pts)
    exact = pts.norm(dim=1) - 0.5
    assert float((sd - exact).abs().max()) <= sag + 1e-9
    assert bool((sd[exact < -sag] < 0).all()) and bool((sd[exact > 0] > 0).all())


def test_closest_points_match_brute_force():
    m = torus(0.35, 0.12, major_segments=12, minor_segments=6)
    v, f = m.vertices.double().numpy(), m.faces.numpy()
    g = torch.Generator().manual_seed(3)
    pts = (torch.rand(300, 3, generator=g, dtype=torch.float64) - 0.5) * 1.5
    cp = closest_points(v, f, pts)
    np.testing.assert_allclose(cp.distance.numpy(), brute_distance(v, f, pts.numpy()), atol=1e-12)
    np.testing.assert_allclose((cp.point - pts).norm(dim=1).numpy(), cp.distance.numpy(), atol=1e-12)
    # The reported face really is at that distance.
    np.testing.assert_allclose(brute_distance(v, f[cp.face.numpy()[:1]], pts.numpy()[:1]), cp.distance.numpy()[:1])


# ----------------------------------------------------------------------------------- geometry metrics


def test_sample_surface_deterministic_area_weighted_and_on_surface():
    m = box((2.0, 1.0, 1.0), subdivisions=2)
    p1, n1 = sample_surface(m.vertices, m.faces, 20000, seed=5)
    p2, _ = sample_surface(m.vertices, m.faces, 20000, seed=5)
    p3, _ = sample_surface(m.vertices, m.faces, 20000, seed=6)
    assert torch.equal(p1, p2) and not torch.equal(p1, p3)
    half = torch.tensor([1.0, 0.5, 0.5])
    on_face = ((p1.abs() - half).abs() < 1e-6)
    assert bool(on_face.any(1).all())
    # Area fractions: the two x faces have area 1 each of a total 10.
    frac_x = float(on_face[:, 0].float().mean())
    assert abs(frac_x - 0.2) < 0.01
    # Normals are unit, outward along the face axis.
    axis = on_face.float().argmax(1)
    assert torch.allclose(n1.norm(dim=1), torch.ones(len(n1)), atol=1e-6)
    assert bool((n1[torch.arange(len(n1)), axis] * p1[torch.arange(len(p1)), axis] > 0).all())


def test_concentric_spheres_chamfer_and_fscore_flip():
    r, d = 0.5, 0.02
    inner, outer = icosphere(5, radius=r), icosphere(5, radius=r + d)
    m = evaluate_meshes(outer, inner, n_points=30000, thresholds=(0.01, 0.03))
    dn = d * m.scale  # distances are in units of the ground truth's bounding box
    assert abs(m.chamfer_l1 - dn) < 0.1 * dn
    assert abs(m.accuracy - dn) < 0.1 * dn and abs(m.completeness - dn) < 0.1 * dn
    assert abs(m.chamfer_l2 - dn ** 2) < 0.25 * dn ** 2
    assert m.f_score[0.01] == 0.0 and m.precision[0.01] == 0.0
    assert m.f_score[0.03] > 0.99
    assert m.normal_consistency > 0.99
    expected_iou = (r / (r + d)) ** 3
    assert abs(m.volume_iou - expected_iou) < 0.01
    d_dict = m.to_dict()
    assert d_dict["f_score@0.03"] == m.f_score[0.03] and d_dict["volume_iou"] == m.volume_iou


def test_identical_meshes_are_perfect():
    m = bumpy_sphere(4)
    res = evaluate_meshes(m, m, n_points=5000)
    assert res.chamfer_l1 == 0.0 and res.chamfer_l2 == 0.0
    assert all(v == 1.0 for v in res.f_score.values())
    assert res.normal_consistency == pytest.approx(1.0, abs=1e-12)
    assert res.volume_iou == 1.0


def test_volume_iou_translated_cube_analytic():
    a = box((1.0, 1.0, 1.0))
    b = box((1.0, 1.0, 1.0), center=(0.25, 0.5, 0.0))
    inter = 0.75 * 0.5 * 1.0
    assert volume_iou(a, b, n=200_000, seed=1) == pytest.approx(inter / (2 - inter), abs=0.006)
    assert volume_iou(a, box((1.0, 1.0, 1.0), center=(2.0, 0.0, 0.0)), n=20_000) == 0.0


def test_point_metrics_by_hand_and_open_mesh_has_no_iou():
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    y = torch.tensor([[-0.1, 0.0, 0.0], [3.0, 0.0, 0.0]])
    # pred->gt: 0.1, 1.1 ; gt->pred: 0.1, 2.0
    assert chamfer_distance(x, y) == pytest.approx(((0.1 + 1.1) / 2 + (0.1 + 2.0) / 2) / 2)
    assert chamfer_distance(x, y, "l2") == pytest.approx(((0.01 + 1.21) / 2 + (0.01 + 4.0) / 2) / 2)
    assert f_score(x, y, 0.5) == pytest.approx(0.5)  # P = R = 1/2
    nx = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    ny = torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    assert normal_consistency(x, nx, y, ny) == pytest.approx(0.5)  # x0<->y0 agree, x1->y0 and y1->x1 do not
    b = box((1.0, 1.0, 1.0))
    open_box = Mesh(vertices=b.vertices, faces=b.faces[2:])
    assert is_watertight(b.faces) and not is_watertight(open_box.faces)
    assert evaluate_meshes(open_box, b, n_points=2000).volume_iou is None
    split = b.vertices[b.faces].reshape(-1, 3)
    split_faces = torch.arange(split.shape[0]).reshape(-1, 3)
    assert not is_watertight(split_faces) and is_watertight(split_faces, split)
    with pytest.raises(InputError):
        evaluate_meshes(Mesh(vertices=b.vertices, faces=b.faces[:0]), b)


# ----------------------------------------------------------------------------------- image metrics


def test_psnr_analytic():
    t = torch.rand(2, 8, 8, 3, generator=torch.Generator().manual_seed(0))
    err = torch.zeros_like(t)
    err[0] += 0.1       # MSE 1e-2 -> 20 dB
    err[1] += 0.01      # MSE 1e-4 -> 40 dB
    assert float(psnr(t + err, t)) == pytest.approx(30.0, abs=1e-4)
    assert float(psnr(t + err, t, max_val=2.0)) == pytest.approx(30.0 + 20 * math.log10(2), abs=1e-4)
    mask = torch.zeros(2, 8, 8, 1)
    mask[:, :4] = 1
    bad = t.clone()
    bad[:, 4:] += 0.5   # errors only outside the mask
    bad[:, :4] += 0.1
    assert float(psnr(bad, t, mask=mask)) == pytest.approx(20.0, abs=1e-4)
    with pytest.raises(InputError):
        psnr(t, t[..., :2])


def test_ssim_matches_skimage():
    structural_similarity = pytest.importorskip("skimage.metrics").structural_similarity
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 40, 33, 3, generator=g, dtype=torch.float64)
    smooth = torch.nn.functional.avg_pool2d(a.permute(0, 3, 1, 2), 5, 1, 2).permute(0, 2, 3, 1)
    b = (smooth + 0.1 * torch.rand(a.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    ref = np.mean([structural_similarity(b[i].numpy(), smooth[i].numpy(), gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=1.0, channel_axis=-1)
                   for i in range(2)])
    assert float(ssim(b, smooth)) == pytest.approx(ref, abs=1e-4)
    assert float(ssim(b.float(), smooth.float())) == pytest.approx(ref, abs=1e-4)
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-12)
    x = smooth.clone().requires_grad_(True)
    ssim(x, b).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_mask_iou_and_composite():
    a = torch.zeros(2, 4, 4, 1)
    b = torch.zeros(2, 4, 4, 1)
    a[0, :2], b[0, 1:3] = 1, 1          # IoU 1/3
    a[1, :, :2], b[1, :, :2] = 0.9, 0.6  # identical after thresholding -> 1
    assert float(mask_iou(a, b)) == pytest.approx((1 / 3 + 1) / 2)
    assert float(mask_iou(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3))) == 1.0
    rgb = torch.full((1, 2, 2, 3), 0.2)
    alpha = torch.tensor([0.0, 0.5, 1.0, 1.0]).reshape(1, 2, 2, 1)
    out = composite(rgb, alpha)
    assert torch.allclose(out[..., 0].flatten(), torch.tensor([1.0, 0.6, 0.2, 0.2]))
    assert torch.allclose(composite(torch.cat([rgb, alpha], -1), background=0.0), rgb * alpha)


def test_closest_points_survive_zero_area_triangles():
    # a duplicated vertex makes face 0 degenerate; the nearest point is still found on the real faces
    v = torch.tensor([[0.0, 0, 0], [0.0, 0, 0], [1.0, 0, 0], [0.0, 1, 0], [1.0, 1, 0]])
    f = torch.tensor([[0, 1, 2], [2, 3, 4]])
    q = torch.tensor([[0.5, -1.0, 0.0], [0.9, 0.9, 2.0], [-1.0, 0.0, 0.0]])
    d = closest_points(v, f, q).distance
    assert torch.allclose(d, torch.tensor([1.0, 2.0, 1.0]), atol=1e-5)
