"""soft_silhouette: DIB-R aggregation vs a brute-force per-pixel computation, gradients, the compiled kernel against
the PyTorch reference, bad input."""

import importlib
import math

import numpy as np
import pytest
import torch

from unrender.errors import InputError
silhouette_module = importlib.import_module("unrender.render.soft_silhouette")
from unrender.render.soft_silhouette import soft_silhouette

BACKENDS = ["torch", pytest.param("numba", marks=pytest.mark.skipif(silhouette_module.soft_silhouette_cpu is None,
                                                                      reason="numba kernels unavailable"))]


def brute_distance(p, tri2d):
    """Distance from point p to the filled 2D triangle (0 inside), by plain per-edge geometry."""
    a, b, c = (np.asarray(v, dtype=np.float64) for v in tri2d)
    signs = []
    for u, v in ((a, b), (b, c), (c, a)):
        signs.append((v[0] - u[0]) * (p[1] - u[1]) - (v[1] - u[1]) * (p[0] - u[0]))
    if all(s >= 0 for s in signs) or all(s <= 0 for s in signs):
        return 0.0
    best = math.inf
    for u, v in ((a, b), (b, c), (c, a)):
        d = v - u
        t = min(1.0, max(0.0, float(np.dot(p - u, d) / np.dot(d, d))))
        best = min(best, float(np.linalg.norm(p - (u + t * d))))
    return best


def brute_silhouette(tris2d, h, w, delta, cutoff):
    out = np.zeros((h, w))
    for row in range(h):
        for col in range(w):
            p = np.array([2 * (col + 0.5) / w - 1, 2 * (row + 0.5) / h - 1])
            prod = 1.0
            for t in tris2d:
                if brute_distance(p, t) == 0:  # inside a triangle: exactly 1
                    prod = 0.0
                    break
                e = math.exp(-brute_distance(p, t) ** 2 / delta)
                if e >= cutoff:
                    prod *= max(1 - e, 1e-6)  # the documented clamp of 1 - e_j
            out[row, col] = 1 - prod
    return out


def clip(xy, w=1.0, z=0.0):
    return torch.tensor([[x * w, y * w, z, w] for x, y in xy], dtype=torch.float64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_triangle_matches_brute_force(backend):
    xy = [(-0.43, -0.52), (0.61, -0.31), (-0.12, 0.58)]
    delta, cutoff = 4e-3, 1e-4
    sil = soft_silhouette(clip(xy, w=2.0), torch.tensor([[0, 1, 2]]), (20, 24), delta=delta, cutoff=cutoff,
                          backend=backend)[0]
    ref = brute_silhouette([xy], 20, 24, delta, cutoff)
    assert np.abs(sil.numpy() - ref).max() < 1e-9
    inside = np.array([[brute_distance(np.array([2 * (c + 0.5) / 24 - 1, 2 * (r + 0.5) / 20 - 1]), xy) == 0
                        for c in range(24)] for r in range(20)])
    assert inside.sum() > 50 and (sil.numpy()[inside] == 1).all()
    # outside, A = exp(-d^2 / delta) decays with distance and reaches 0 far away
    assert ((sil.numpy()[~inside] < 1) & (sil.numpy()[~inside] >= 0)).all()
    assert (sil.numpy() == 0).sum() > 50


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_faces_aggregate_as_a_product(backend):
    a = [(-0.8, -0.6), (-0.1, -0.6), (-0.45, 0.5)]
    b = [(0.1, -0.2), (0.75, -0.3), (0.4, 0.71)]  # no pixel centre exactly on an edge
    delta = 0.02
    pos = torch.cat([clip(a), clip(b)])
    sil = soft_silhouette(pos, torch.tensor([[0, 1, 2], [3, 4, 5]]), 16, delta=delta, backend=backend)[0].numpy()
    ref = brute_silhouette([a, b], 16, 16, delta, 1e-4)
    assert np.abs(sil - ref).max() < 1e-9
    # between the faces both contribute: A = 1 - (1 - e_a)(1 - e_b) > max(e_a, e_b)
    best = None
    for r in range(16):
        for c in range(16):
            p = np.array([2 * (c + 0.5) / 16 - 1, 2 * (r + 0.5) / 16 - 1])
            ea, eb = (math.exp(-brute_distance(p, t) ** 2 / delta) for t in (a, b))
            if best is None or min(ea, eb) > best[0]:
                best = (min(ea, eb), r, c, ea, eb)
    m, r, c, ea, eb = best
    assert 0.05 < m and max(ea, eb) < 1
    assert sil[r, c] == pytest.approx(1 - (1 - ea) * (1 - eb), abs=1e-12) and sil[r, c] > max(ea, eb) + 0.01


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_float64(backend):
    pos = clip([(-0.4, -0.35), (0.45, -0.3), (-0.1, 0.5), (0.6, 0.55)], w=1.3)
    pos[1, 3] = 1.1  # a non-uniform w, so the projection's derivative is exercised
    pos.requires_grad_()
    tri = torch.tensor([[0, 1, 2], [2, 1, 3]])
    assert torch.autograd.gradcheck(lambda p: soft_silhouette(p, tri, (7, 9), delta=0.05, backend=backend), (pos,),
                                     eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_pulls_the_edge_towards_a_target(backend):
    # A pixel just outside the right edge wants coverage: the gradient moves the right vertices right.
    pos = clip([(-0.5, -0.5), (0.3, -0.5), (-0.5, 0.5), (0.3, 0.5)]).requires_grad_()
    tri = torch.tensor([[0, 1, 2], [2, 1, 3]])
    sil = soft_silhouette(pos, tri, 16, backend=backend)
    (-sil[0, 8, 10]).backward()  # pixel centre x = 0.3125, just right of the edge x = 0.3
    assert pos.grad[[1, 3], 0].sum() < 0 and pos.grad[[0, 2], 0].abs().sum() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunking_batch_and_cameras(backend):
    pos = clip([(-0.6, -0.5), (0.5, -0.4), (-0.1, 0.6), (0.7, 0.6)])
    tri = torch.tensor([[0, 1, 2], [2, 1, 3]])
    full = soft_silhouette(pos, tri, 24, delta=1e-3, backend="torch")
    assert torch.equal(soft_silhouette(pos, tri, 24, delta=1e-3, max_pairs=5, backend="torch"), full)
    behind = pos.clone()
    behind[:, 3] = -1.0  # every vertex behind the camera: nothing is drawn
    batch = soft_silhouette(torch.stack([pos, behind]), tri, 24, delta=1e-3, backend=backend)
    assert batch.shape == (2, 24, 24)
    assert torch.allclose(batch[0], full[0], rtol=0, atol=1e-12) and (batch[1] == 0).all()
    assert soft_silhouette(pos.float(), tri, 24, backend=backend).dtype == torch.float32


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_delta_spreads_one_to_two_pixels_at_256(backend):
    pos = clip([(-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5)])
    sil = soft_silhouette(pos, torch.tensor([[0, 1, 2], [2, 1, 3]]), 256, backend=backend)[0]
    row = sil[128]
    edge_col = 192  # x = 0.5 is the left boundary of column 192
    assert row[edge_col - 1] == 1
    assert 0.3 < row[edge_col] < 0.95 and 0.01 < row[edge_col + 1] < 0.3 and row[edge_col + 4] < 1e-3


def deformed_sphere_views(dtype, views=3, seed=0):
    """Clip positions ``[views,V,4]`` of a bumpy icosphere seen by cameras around it, and its triangles."""
    from unrender.cameras import Camera, look_at
    from unrender.geometry.primitives import icosphere_arrays

    verts, faces = icosphere_arrays(2)
    g = torch.Generator().manual_seed(seed)
    v = torch.tensor(verts, dtype=dtype) * (0.4 + 0.15 * torch.rand(len(verts), 1, generator=g, dtype=dtype))
    eyes = torch.tensor([[0.0, 0.3, 2.0], [1.7, 0.8, 0.6], [-0.9, -1.2, 1.4]])[:views]
    cams = Camera.from_fov(40, 24, 24, look_at(eyes)).to(dtype=dtype)
    return cams.world_to_clip(v.expand(views, -1, -1)).contiguous(), torch.as_tensor(faces)


@pytest.mark.skipif(silhouette_module.soft_silhouette_cpu is None, reason="numba kernels unavailable")
@pytest.mark.parametrize("dtype,cull", [(torch.float64, False), (torch.float32, False), (torch.float64, True)])
def test_numba_matches_the_torch_reference_on_a_mesh(dtype, cull):
    pos, tri = deformed_sphere_views(dtype)
    weights = torch.rand(pos.shape[0], 24, 24, generator=torch.Generator().manual_seed(1), dtype=dtype)
    results = []
    for backend in ("torch", "numba"):
        p = pos.clone().requires_grad_()
        sil = soft_silhouette(p, tri, 24, delta=2e-3, backend=backend, cull_backfaces=cull)
        (sil * weights).sum().backward()
        results.append((sil.detach(), p.grad))
    (ref, ref_grad), (fast, fast_grad) = results
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    assert fast.dtype == dtype and fast.shape == ref.shape
    assert ((ref > 0.01) & (ref < 0.99)).sum() > 50  # a real soft band is compared, not only 0 and 1
    assert (fast - ref).abs().max() < tol
    assert ref_grad.abs().max() > 1e-3
    assert (fast_grad - ref_grad).abs().max() < tol * 100 * ref_grad.abs().max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_cull_backfaces_drops_clockwise_triangles_only(backend):
    xy = [(-0.5, -0.4), (0.5, -0.3), (-0.1, 0.6)]  # counter-clockwise
    tri = torch.tensor([[0, 1, 2]])
    ccw = soft_silhouette(clip(xy), tri, 16, delta=0.01, backend=backend, cull_backfaces=True)
    assert torch.equal(ccw, soft_silhouette(clip(xy), tri, 16, delta=0.01, backend=backend)) and ccw.max() == 1
    cw = soft_silhouette(clip(xy), tri[:, [0, 2, 1]], 16, delta=0.01, backend=backend, cull_backfaces=True)
    assert (cw == 0).all()
    # a closed sphere: the front half alone covers the same pixels as the whole mesh
    pos, faces = deformed_sphere_views(torch.float64, views=2)
    full = soft_silhouette(pos, faces, 24, delta=2e-3, backend=backend)
    front = soft_silhouette(pos, faces, 24, delta=2e-3, backend=backend, cull_backfaces=True)
    assert torch.equal(full == 1, front == 1) and (full == 1).sum() > 100


@pytest.mark.parametrize("backend", BACKENDS)
def test_triangles_far_off_screen_change_nothing(backend):
    # pixel boxes of corners ~1e21 pixels away must clamp to the image instead of overflowing an int
    near = [(-0.5, -0.5), (0.5, -0.3), (-0.3, 0.6)]
    far = [(1e20, 1e20), (2e20, 1e20), (1e20, 3e20)]
    tri = torch.tensor([[0, 1, 2]])
    alone = soft_silhouette(clip(near), tri, 16, delta=0.01, backend=backend)
    both = soft_silhouette(torch.cat([clip(near), clip(far)]), torch.tensor([[0, 1, 2], [3, 4, 5]]), 16, delta=0.01,
                           backend=backend)
    assert (alone == 1).sum() > 20 and torch.equal(both, alone)


@pytest.mark.skipif(silhouette_module.soft_silhouette_cpu is None, reason="numba kernels unavailable")
def test_numba_backend_refuses_what_it_cannot_run():
    pos = clip([(-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5)])
    with pytest.raises(InputError, match="backend"):
        soft_silhouette(pos, torch.tensor([[0, 1, 2]]), 16, backend="cuda")


def test_bad_input_raises():
    pos = clip([(-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5)])
    tri = torch.tensor([[0, 1, 2]])
    with pytest.raises(InputError):
        soft_silhouette(pos[:, :3], tri, 16)
    with pytest.raises(InputError):
        soft_silhouette(pos, tri + 1, 16)
    with pytest.raises(InputError):
        soft_silhouette(pos, tri.float(), 16)
    with pytest.raises(InputError):
        soft_silhouette(pos, tri, 16, delta=0.0)
    with pytest.raises(InputError):
        soft_silhouette(pos, tri, 16, cutoff=1.5)
    with pytest.raises(InputError):
        soft_silhouette(pos, tri, (0, 16))
