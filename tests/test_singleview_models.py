"""Single-view models: encoder, DIB-R mesh predictor and its losses, LIST-style implicit predictor and extraction."""

import math

import numpy as np
import pytest
import torch

from unrender.cameras import Camera, look_at
from unrender.errors import InputError
from unrender.geometry.dmtet import laplacian_loss
from unrender.geometry.primitives import icosphere
from unrender.mesh import Mesh
from unrender.metrics.geometry import is_watertight
from unrender.render.render_mesh import render_mesh
from unrender.singleview import (DIBROutput, DIBRPredictor, ImageEncoder, ImplicitPredictor,
                                 chamfer_loss, dibr_losses, extract_mesh, flatten_loss, implicit_losses,
                                 render_views, sdf_grid, silhouette_iou_loss, uniform_laplacian_loss)
from unrender.singleview.encoders import sample_pyramid
from unrender.singleview.implicit import clamped_l1
from unrender.singleview.mesh_validation import best_level, level_chamfers


pytestmark = pytest.mark.usefixtures("one_thread")


def square_images(centres, size=64, half=5):
    """RGBA images ``[N,4,size,size]`` of a bright square (half-width ``half`` px) at pixel ``centres[N,2]``."""
    imgs = torch.zeros(len(centres), 4, size, size)
    for i, (cx, cy) in enumerate(centres):
        imgs[i, :, cy - half:cy + half, cx - half:cx + half] = 1.0
    return imgs


# ------------------------------------------------------------------------------------------------ encoder
def test_encoder_shapes_and_channels():
    enc = ImageEncoder(in_channels=4)
    for res in (64, 128):
        out = enc(torch.rand(2, 3, res, res))  # RGB into an RGBA encoder: alpha = 1
        assert out.global_feature.shape == (2, 256)
        assert [tuple(f.shape) for f in out.pyramid] == [(2, c, res // 2 ** (i + 1), res // 2 ** (i + 1))
                                                         for i, c in enumerate(enc.pyramid_channels)]
    with pytest.raises(InputError, match="channels last"):
        enc(torch.rand(1, 64, 64, 4))
    with pytest.raises(InputError, match="in_channels=4"):
        ImageEncoder(in_channels=3)(torch.rand(1, 4, 64, 64))


def test_encoder_is_translation_sensitive_and_trainable():
    torch.manual_seed(0)
    enc = ImageEncoder(in_channels=4)
    a, b = enc(square_images([(20, 32), (44, 32)])).global_feature
    assert (a - b).norm() > 0.05 * a.norm()  # the same square elsewhere gives another feature
    # Regress the square's position: the pooled feature must carry where things are.
    gen = torch.Generator().manual_seed(1)
    centres = torch.randint(8, 56, (16, 2), generator=gen)
    images = square_images(centres.tolist())
    target = centres.float() / 32 - 1
    head = torch.nn.Linear(256, 2)
    opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=1e-3)
    losses = []
    for _ in range(40):
        loss = (head(enc(images).global_feature) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]


# ------------------------------------------------------------------------------------------------ DIB-R
def ellipsoid_scene(res=64, lift=0.15):
    """An off-centre coloured ellipsoid seen by two cameras: (mesh, cameras [2], masks [1,2,H,W], rgb, image)."""
    sph = icosphere(3)
    v = sph.vertices * torch.tensor([1.6, 1.0, 0.7]) + torch.tensor([0.0, lift, 0.0])
    cols = torch.stack([0.2 + 0.6 * (v[:, 0] > 0).float(), torch.full_like(v[:, 0], 0.3),
                        0.8 - 0.5 * (v[:, 1] > lift).float()], 1)
    mesh = Mesh(vertices=v, faces=sph.faces, vertex_colors=cols)
    cams = Camera.from_fov(45, res, res, look_at(torch.tensor([[2.2, 0.8, 1.5], [-1.5, 1.0, 2.2]])))
    ren = render_mesh(mesh, cams, shading="albedo")
    image = ren.rgba()[:1].permute(0, 3, 1, 2)
    return mesh, cams, ren.alpha[..., 0][None], ren.color[None], image


def test_dibr_untrained_model_is_the_grey_template_sphere():
    model = DIBRPredictor()
    out = model(torch.rand(2, 4, 64, 64))
    assert out.vertices.shape == (2, 642, 3) and out.faces.shape == (1280, 3) and out.light is None
    assert torch.equal(out.mesh(1).vertices, out.vertices[1]) and out.mesh(1).vertex_colors.shape == (642, 3)
    assert torch.allclose(out.vertices.norm(dim=-1), torch.full((2, 642), 0.5), atol=1e-6)
    assert torch.allclose(out.colors, torch.full_like(out.colors, 0.5))
    assert DIBRPredictor(lighting="sh")(torch.rand(1, 3, 64, 64)).light.shape == (1, 9)
    assert DIBRPredictor(lighting="directional")(torch.rand(1, 3, 64, 64)).light.shape == (1, 5)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < 4_000_000


def test_dibr_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model = DIBRPredictor(dropout=0.5)
    torch.nn.init.normal_(model.offset_head.weight, std=0.1)  # heads start at zero, which would hide the dropout
    images = torch.rand(1, 4, 64, 64)
    a, b = model(images).vertices, model(images).vertices
    assert not torch.allclose(a, b)  # a new mask each call
    model.eval()
    a, b = model(images).vertices, model(images).vertices
    assert torch.equal(a, b)
    reference = DIBRPredictor()
    reference.load_state_dict(model.state_dict())  # the rate is not part of the weights
    assert torch.equal(reference.eval()(images).vertices, a)
    with pytest.raises(InputError, match="dropout"):
        DIBRPredictor(dropout=1.0)


def test_render_views_matches_render_mesh_orientation():
    """The true mesh rendered by render_views overlaps render_mesh's alpha (top row first) almost exactly."""
    mesh, cams, masks, rgb, _ = ellipsoid_scene()
    out = DIBROutput(mesh.vertices[None], mesh.vertex_colors[None], mesh.faces)
    r = render_views(out, cams)
    ref = masks[0] > 0.5

    def iou(x):
        return ((x & ref).sum() / (x | ref).sum()).item()

    assert iou(r.alpha > 0.5) > 0.99
    soft = r.silhouette > 0.5
    assert iou(soft) > 0.9 and bool(soft[ref].all())  # the soft silhouette is the mask plus a thin halo
    assert iou(soft.flip(1)) < 0.8  # the scene is not symmetric: a wrong row order would be caught
    inside = ref & (r.alpha > 0.99)
    assert (r.color - rgb[0]).abs()[inside].mean() < 0.02
    losses = dibr_losses(out, cams, masks, rgb)
    assert losses["iou"] > 0.97 and losses["color"] < 0.05


def test_iou_loss_identical_and_disjoint():
    m = (torch.rand(3, 16, 16) > 0.5).float()
    assert silhouette_iou_loss(m, m).item() == 0.0
    assert silhouette_iou_loss(torch.zeros(2, 8, 8), torch.zeros(2, 8, 8)).item() == 0.0
    assert silhouette_iou_loss(m, 1 - m).item() == pytest.approx(1.0, abs=1e-6)
    soft = torch.full((1, 4, 4), 0.5)
    # inter = 8 * 0.5 = 4 over the 8 target pixels, union = 8 + 8 * 0.5 = 12
    target = torch.zeros(1, 4, 4)
    target[0, :2] = 1
    assert silhouette_iou_loss(soft, target).item() == pytest.approx(1 - 4 / 12, abs=1e-6)


def grid_patch(n=5, dtype=torch.float64):
    """Planar ``n x n`` vertex grid in [-1, 1]^2 (z = 0), two triangles per cell."""
    xs = torch.linspace(-1, 1, n, dtype=dtype)
    y, x = torch.meshgrid(xs, xs, indexing="ij")
    v = torch.stack([x, y, torch.zeros_like(x)], -1).reshape(-1, 3)
    faces = []
    for i in range(n - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            faces += [[a, b, c], [c, b, d]]
    return v, torch.tensor(faces)


def test_flatten_loss_zero_when_planar_positive_when_folded():
    v, f = grid_patch()
    rot = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]
    assert flatten_loss(v @ rot.T + 0.3, f).item() < 1e-20  # any plane, anywhere
    alpha = math.radians(50)
    folded = v.clone()  # rotate the half x > 0 about the y axis: a crease along x = 0
    right = v[:, 0] > 0
    folded[right, 0] = v[right, 0] * math.cos(alpha)
    folded[right, 2] = v[right, 0] * math.sin(alpha)
    # Only the interior edges on the crease bend: cos(theta) = cos(pi - alpha) there.
    n_interior = (3 * f.shape[0] - 16) // 2  # (3F - boundary edges) / 2 with 4 (n - 1) = 16 boundary edges
    expected = 4 * (1 - math.cos(alpha)) ** 2 / n_interior
    assert flatten_loss(folded, f).item() == pytest.approx(expected, rel=1e-9)
    assert flatten_loss(torch.stack([v, folded]), f).item() == pytest.approx(expected / 2, rel=1e-9)


def test_uniform_laplacian_matches_dmtet_laplacian_loss():
    sph = icosphere(3)
    v = sph.vertices.double()[None] + 0.05 * torch.randn(3, 642, 3, dtype=torch.float64)
    ref = torch.stack([laplacian_loss(x, sph.faces) for x in v]).mean()
    assert uniform_laplacian_loss(v, sph.faces).item() == pytest.approx(ref.item(), rel=1e-12)


def test_dibr_losses_reject_mismatched_views():
    _, cams, masks, rgb, image = ellipsoid_scene(res=32)
    out = DIBRPredictor()(image)
    with pytest.raises(InputError, match="B K"):
        dibr_losses(out, cams[[0]], masks, rgb)
    with pytest.raises(InputError, match="image size"):
        dibr_losses(out, cams, masks[..., :16], rgb)


def test_dibr_overfits_one_sample():
    torch.manual_seed(0)
    _, cams, masks, rgb, image = ellipsoid_scene()
    model = DIBRPredictor()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(30):
        losses = dibr_losses(model(image), cams, masks, rgb)
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        history.append({k: v.item() for k, v in losses.items()})
    first, last = history[0], history[-1]
    assert last["total"] < 0.5 * first["total"]
    assert last["silhouette"] < 0.5 * first["silhouette"]
    assert last["iou"] > max(first["iou"] + 0.1, 0.9)


def test_sh_lighting_starts_unlit_and_learns():
    _, cams, masks, rgb, image = ellipsoid_scene(res=32)
    lit, plain = DIBRPredictor(lighting="sh"), DIBRPredictor()
    plain.load_state_dict({k: v for k, v in lit.state_dict().items() if not k.startswith("light_head")})
    out_lit, out_plain = lit(image), plain(image)
    assert torch.allclose(render_views(out_lit, cams).color, render_views(out_plain, cams).color, atol=1e-5)
    dibr_losses(out_lit, cams, masks, rgb)["total"].backward()
    assert lit.light_head.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------ implicit
SPHERE_RADIUS = 0.35


def sphere_batch(gen, q=1024):
    """Queries (uniform in the cube + near the surface), analytic SDF targets and surface samples."""
    uni = (torch.rand(q // 2, 3, generator=gen) * 2 - 1) * 0.6
    d = torch.nn.functional.normalize(torch.randn(q // 2, 3, generator=gen), dim=-1)
    near = d * SPHERE_RADIUS + 0.03 * torch.randn(q // 2, 3, generator=gen)
    pts = torch.cat([uni, near])[None]
    surf = torch.nn.functional.normalize(torch.randn(1, 512, 3, generator=gen), dim=-1) * SPHERE_RADIUS
    return pts, pts.norm(dim=-1) - SPHERE_RADIUS, surf


@pytest.fixture(scope="module")
def sphere_model():
    """An ImplicitPredictor overfitted to the analytic sphere SDF from one image.

    Returns (model, image, history of training losses, clamped SDF error and sign accuracy on a fixed evaluation
    set before and after training)."""
    torch.manual_seed(0)
    cam = Camera.from_fov(45, 64, 64, look_at([[0.5, 0.4, 1.8]]))
    image = render_mesh(icosphere(3, SPHERE_RADIUS), cam, shading="albedo").rgba()[0].permute(2, 0, 1)
    model = ImplicitPredictor(num_coarse_points=256)
    eval_pts, eval_sdf, _ = sphere_batch(torch.Generator().manual_seed(123), 4096)

    def evaluate():
        with torch.no_grad():
            pred = model(image[None], eval_pts).sdf
        return clamped_l1(pred, eval_sdf, 0.1).mean().item(), ((pred < 0) == (eval_sdf < 0)).float().mean().item()

    before = evaluate()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    history = []
    for _ in range(80):
        pts, sdf, surf = sphere_batch(gen)
        losses = implicit_losses(model(image[None], pts), sdf, surf)
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        history.append({k: v.item() for k, v in losses.items()})
    return model, image, history, (before, evaluate())


def test_implicit_shapes_and_broadcast_queries():
    model = ImplicitPredictor(in_channels=3, num_coarse_points=64)
    out = model(torch.rand(2, 3, 64, 64), torch.rand(50, 3) - 0.5)
    assert out.sdf.shape == (2, 50) and out.coarse_points.shape == (2, 64, 3) and out.image_coords.shape == (2, 50, 2)
    assert out.coarse_points.abs().max() <= 0.6
    with pytest.raises(InputError, match="batch"):
        model(torch.rand(2, 3, 64, 64), torch.rand(3, 50, 3))


def test_pixel_features_read_the_input_pixel_a_query_projects_to():
    torch.manual_seed(0)
    model = ImplicitPredictor(in_channels=3, num_coarse_points=64, pixel_channels=8)
    image = torch.rand(1, 3, 64, 64)
    code = model.encode(image)
    assert code.pixel_map.shape == (1, 3 + 8, 64, 64)
    # Untrained, the transformer is the front view x / 0.6 -> u, -y / 0.6 -> v: put queries on pixel centres.
    rows, cols = torch.tensor([5, 40, 63]), torch.tensor([0, 17, 50])
    u, v = (cols + 0.5) / 32 - 1, (rows + 0.5) / 32 - 1
    pts = torch.stack([u * 0.6, -v * 0.6, torch.zeros(3)], -1)[None]
    sampled = sample_pyramid([code.pixel_map], model.transformer(code.global_feature, pts))
    assert torch.allclose(sampled[0, :, :3], image[0, :, rows, cols].T, atol=1e-6)
    # Off by default: no extra weights, so checkpoints written before the option still load.
    plain = ImplicitPredictor(in_channels=3, num_coarse_points=64)
    assert plain.encode(image).pixel_map is None
    assert not any(k.startswith("pixel_conv") for k in plain.state_dict())


def test_spatial_transformer_starts_as_front_view_and_learns_a_camera():
    torch.manual_seed(0)
    model = ImplicitPredictor(num_coarse_points=64)
    pts = (torch.rand(1, 200, 3) - 0.5) * 1.2
    g = model.encode(torch.rand(1, 4, 64, 64)).global_feature
    uv = model.transformer(g, pts)
    assert torch.allclose(uv, torch.stack([pts[..., 0], -pts[..., 1]], -1) / 0.6, atol=1e-6)
    # Supervised by a camera from the side, the gradient reaches the transformer and its error falls.
    cam = Camera.from_fov(40, 64, 64, look_at([[2.0, 0.5, 0.8]]))
    image = torch.rand(1, 4, 64, 64)
    opt = torch.optim.Adam(model.transformer.parameters(), lr=1e-2)
    errs = []
    for i in range(40):
        losses = implicit_losses(model(image, pts), pts.norm(dim=-1) - 0.3, None, cameras=cam)
        opt.zero_grad()
        losses["transformer"].backward()
        if i == 0:
            grads = [p.grad for p in model.transformer.parameters()]
            assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
            assert model.transformer.matrix_head.weight.grad.abs().sum() > 0
            assert model.transformer.residual[-1].weight.grad.abs().sum() > 0
        opt.step()
        errs.append(losses["transformer"].item())
    assert errs[-1] < 0.2 * errs[0]


def test_pose_encoder_keeps_the_camera_loss_out_of_the_shape_encoder():
    torch.manual_seed(0)
    model = ImplicitPredictor(in_channels=3, num_coarse_points=64, pose_widths=(8, 16), pose_dim=32)
    torch.nn.init.normal_(model.transformer.matrix_head.weight, std=0.01)  # zero at start: no gradient to the input
    image, pts = torch.rand(1, 3, 64, 64), (torch.rand(1, 100, 3) - 0.5)
    cam = Camera.from_fov(40, 64, 64, look_at([[2.0, 0.5, 0.8]]))
    losses = implicit_losses(model(image, pts), pts.norm(dim=-1) - 0.3, None, cameras=cam)
    losses["transformer"].backward()
    assert model.pose_encoder.global_head.weight.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.encoder.parameters())
    # Without a pose encoder the same loss reaches the shape encoder (what the option avoids).
    shared = ImplicitPredictor(in_channels=3, num_coarse_points=64)
    torch.nn.init.normal_(shared.transformer.matrix_head.weight, std=0.01)
    implicit_losses(shared(image, pts), pts.norm(dim=-1) - 0.3, None, cameras=cam)["transformer"].backward()
    assert shared.encoder.global_head.weight.grad.abs().sum() > 0


def test_untrained_implicit_reads_the_cube_corners_as_outside():
    torch.manual_seed(0)
    model = ImplicitPredictor(in_channels=3, num_coarse_points=32, widths=(8, 16), feature_dim=32, hidden_dim=32)
    corners = torch.tensor([[x, y, z] for x in (-0.6, 0.6) for y in (-0.6, 0.6) for z in (-0.6, 0.6)])
    with torch.no_grad():
        sdf = model(torch.rand(3, 3, 32, 32), corners).sdf
        residual = sdf - (corners.norm(dim=-1) - model.prior_radius)
    assert (sdf > 0.3).all()  # |x| - r = 0.74 there, and the decoder adds only a small residual
    assert residual.abs().max() < 0.3 and residual.abs().max() > 0  # the decoder still contributes


def test_implicit_overfits_sphere(sphere_model):
    _, _, history, ((err0, sign0), (err1, sign1)) = sphere_model
    assert err1 < 0.3 * err0  # clamped SDF error on held-out queries
    assert sign1 > 0.88 and sign1 > sign0 + 0.1  # inside/outside
    assert history[-1]["chamfer"] < 0.1 * history[0]["chamfer"]


def test_extract_mesh_recovers_sphere(sphere_model):
    model, image, _, _ = sphere_model
    mesh = extract_mesh(model, image, resolution=32)
    assert mesh.faces.shape[0] > 100
    radius = mesh.vertices.norm(dim=-1)
    assert abs(radius.mean().item() - SPHERE_RADIUS) < 0.03 and radius.std().item() < 0.02
    assert is_watertight(mesh.faces, mesh.vertices)
    v = mesh.vertices.double()[mesh.faces]
    volume = (v[:, 0] * torch.linalg.cross(v[:, 1], v[:, 2], dim=-1)).sum().item() / 6
    assert volume == pytest.approx(4 / 3 * math.pi * SPHERE_RADIUS ** 3, rel=0.2)  # positive: faces point out


def test_chunked_extraction_equals_unchunked(sphere_model):
    model, image, _, _ = sphere_model
    whole = sdf_grid(model, image, resolution=20, chunk=1 << 20)
    pieces = sdf_grid(model, image, resolution=20, chunk=777)
    assert torch.allclose(whole, pieces, atol=1e-5)
    a = extract_mesh(model, image, resolution=20, chunk=1 << 20)
    b = extract_mesh(model, image, resolution=20, chunk=777)
    assert a.faces.shape == b.faces.shape and torch.allclose(a.vertices, b.vertices, atol=1e-4)


def test_refined_extraction_matches_dense(sphere_model):
    model, image, _, _ = sphere_model
    dense = sdf_grid(model, image, resolution=33)
    refined = sdf_grid(model, image, resolution=33, coarse_resolution=9)
    assert torch.equal(dense < 0, refined < 0)
    near = dense.abs() < 0.1
    assert near.sum() > 100 and torch.allclose(dense[near], refined[near], atol=1e-5)
    a = extract_mesh(model, image, resolution=33)
    b = extract_mesh(model, image, resolution=33, coarse_resolution=9)
    assert a.faces.shape == b.faces.shape and torch.allclose(a.vertices, b.vertices, atol=1e-4)


def test_extract_mesh_at_a_positive_level_offsets_the_surface(sphere_model):
    model, image, _, _ = sphere_model
    level = 0.04
    zero = extract_mesh(model, image, resolution=33)
    grown = extract_mesh(model, image, resolution=33, level=level)
    # The field is near a true SDF (|x| - r), so the level-l surface is the sphere of radius r + l.
    gap = grown.vertices.norm(dim=-1).mean() - zero.vertices.norm(dim=-1).mean()
    assert gap.item() == pytest.approx(level, abs=0.012)
    assert is_watertight(grown.faces, grown.vertices)
    # Each vertex lies where the field equals the level (checked by querying the model there).
    with torch.no_grad():
        at = model(image[None], grown.vertices[None]).sdf[0]
    assert (at - level).abs().mean().item() < 0.01
    # A level the field never reaches gives the empty mesh, not an error.
    assert extract_mesh(model, image, resolution=9, level=5.0).faces.shape == (0, 3)


def test_level_chamfers_score_each_level_against_the_truth(sphere_model):
    model, image, _, _ = sphere_model
    truth = torch.nn.functional.normalize(torch.randn(1, 2000, 3, generator=torch.Generator().manual_seed(5)), dim=-1)
    c = level_chamfers(model, image[None], truth * SPHERE_RADIUS, levels=(0.0, 0.06, 5.0), resolution=33,
                       coarse_resolution=9)
    assert c.shape == (1, 3)
    assert c[0, 0] < 0.025  # the fitted sphere itself
    assert c[0, 1].item() == pytest.approx(0.06 + c[0, 0].item(), abs=0.02)  # a shell 0.06 too far out
    assert c[0, 2].item() == 0.6  # no surface at level 5: the cube's half-size
    assert best_level(c.sum(0).numpy(), 1, (0.0, 0.06, 5.0)) == (c[0, 0].item(), 0.0)


def test_extract_mesh_is_empty_safe():
    model = ImplicitPredictor(num_coarse_points=64)
    last = model.decoder[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, 1.0)  # SDF = 1 everywhere: no surface
    mesh = extract_mesh(model, torch.rand(4, 64, 64), resolution=8)
    assert mesh.vertices.shape == (0, 3) and mesh.faces.shape == (0, 3)
    with pytest.raises(InputError, match="one image"):
        extract_mesh(model, torch.rand(2, 4, 64, 64))


def test_clamped_l1_and_chamfer():
    pred = torch.tensor([0.05, 0.5, 0.5, -0.5, -0.05])
    target = torch.tensor([0.02, 0.3, -0.3, -0.2, 0.3])
    assert torch.allclose(clamped_l1(pred, target, 0.1), torch.tensor([0.03, 0.0, 0.6, 0.0, 0.15]))
    a = torch.tensor([[[0.0, 0, 0], [1, 0, 0]]])
    b = torch.tensor([[[0.0, 0, 0.5]]])
    # a -> b: (0.25 + 1.25) / 2; b -> a: 0.25
    assert chamfer_loss(a, b).item() == pytest.approx(0.75 + 0.25)
    assert np.isclose(chamfer_loss(a, a).item(), 0.0)
    # Gradient of the matched-pairs form equals that of the min over the whole distance table.
    x = torch.randn(2, 30, 3, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 40, 3, dtype=torch.float64, requires_grad=True)
    chamfer_loss(x, y).backward()
    d2 = (x[:, :, None] - y[:, None]).square().sum(-1)
    gx, gy = torch.autograd.grad((d2.amin(2).mean(1) + d2.amin(1).mean(1)).mean(), (x, y))
    assert torch.allclose(x.grad, gx) and torch.allclose(y.grad, gy)
