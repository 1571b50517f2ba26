"""Dataset layouts: read the synthetic NeRF-synthetic fixture, round-trip it through every layout, check axis
conventions against each format's own projection formula, and refuse malformed input by file name."""

import json
import math
import shutil

import numpy as np
import pytest
import torch

from unrender.color import srgb_to_linear
from unrender.data.layouts import (LAYOUTS, MultiViewDataset, decompose_projection, read_dataset, write_colmap,
                                   write_layout)
from unrender.data.layouts.colmap import quaternion_to_rotation, rotation_to_quaternion
from unrender.data.synth import synthesize_object
from unrender.errors import DataError, InputError
from unrender.io.images import read_image, write_png
from unrender.io.mesh_files import load_mesh

BLENDER_LAYOUTS = ("blender", "blender-ngp")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """The 'mug' object (8 train views at 48x48) read back, with the ground-truth mesh box as bounds."""
    root = synthesize_object(tmp_path_factory.mktemp("synth") / "mug", family="mug", views=8, resolution=48,
                             seed=1, force=True)
    ds = read_dataset(root, "train")
    verts = load_mesh(root / "gt" / "mesh.obj").vertices.double()
    ds.bounds = torch.stack([verts.amin(0), verts.amax(0)]).float()
    return root, ds


def _copy(synthetic, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synthetic[0], root, ignore=shutil.ignore_patterns("gt"))
    return root


def test_read_nerf_synthetic(synthetic):
    root, ds = synthetic
    meta = json.loads((root / "transforms_train.json").read_text())
    assert isinstance(ds, MultiViewDataset) and ds.layout == "blender" and ds.split == "train"
    assert ds.names == [f"r_{i}" for i in range(8)] and ds.has_masks
    assert ds.rgba.shape == (8, 48, 48, 4) and ds.rgba.dtype == torch.float16
    fx = 24.0 / math.tan(meta["camera_angle_x"] / 2)
    assert torch.allclose(ds.camera.fx, torch.full((8,), fx)) and torch.allclose(ds.camera.cy, torch.full((8,), 24.0))
    c2w = torch.tensor([f["transform_matrix"] for f in meta["frames"]])
    assert torch.equal(ds.camera.c2w, c2w)
    img = read_image(root / "train" / "r_5.png")
    assert torch.equal(ds.rgba[5].float().mul(255).round(), img.mul(255).round())
    rgb, mask = ds.frames([5])
    assert rgb.dtype == torch.float32 and mask.shape == (1, 48, 48, 1)
    assert torch.allclose(rgb[0], srgb_to_linear(img[..., :3]), atol=2e-3) and 0 < mask.mean() < 1
    sub = ds.subset([2, 0])
    assert sub.names == ["r_2", "r_0"] and torch.equal(sub.camera.c2w[1], ds.camera.c2w[0])
    assert [len(read_dataset(root, s)) for s in ("val", "test")] == [2, 4]
    assert read_dataset(root, "test", dtype=torch.float64).camera.c2w.dtype == torch.float64


@pytest.mark.parametrize("layout", LAYOUTS)
def test_round_trip(synthetic, tmp_path, layout):
    _, ds = synthetic
    perm = [3, 0, 7, 5, 1, 6, 2, 4]  # written shuffled so that name-sorted layouts must reorder
    src = ds.subset(perm)
    write_layout(src, tmp_path / layout, layout)
    back = read_dataset(tmp_path / layout, "train" if layout in BLENDER_LAYOUTS else "all")
    # Ordering: Blender keeps the JSON (= written) order; every other layout sorts frames by name.
    expected = src.names if layout in BLENDER_LAYOUTS else sorted(src.names)
    assert back.names == expected and [f.stem for f in back.files] == expected
    ref = src.subset([src.names.index(n) for n in back.names])
    assert (back.camera.c2w - ref.camera.c2w).abs().max() < 1e-4
    for k in ("fx", "fy", "cx", "cy"):
        assert (getattr(back.camera, k) - getattr(ref.camera, k)).abs().max() < 1e-3, k
    assert (back.camera.width, back.camera.height) == (48, 48)
    assert (back.rgba[..., :3].float() - ref.rgba[..., :3].float()).abs().max() <= 1 / 255
    assert back.has_masks
    if layout in BLENDER_LAYOUTS:
        assert (back.rgba[..., 3].float() - ref.rgba[..., 3].float()).abs().max() <= 1 / 255
    else:  # RGB + mask-file layouts keep the binary mask alpha > 0.5
        assert torch.equal(back.rgba[..., 3] > 0.5, ref.rgba[..., 3] > 0.5)
        assert set(back.rgba[..., 3].unique().tolist()) == {0.0, 1.0}
    g = torch.Generator().manual_seed(0)
    points = ref.bounds[0] + torch.rand(64, 3, generator=g) * (ref.bounds[1] - ref.bounds[0])
    px_ref, px_back = ref.camera.world_to_pixel(points), back.camera.world_to_pixel(points)
    assert ((px_ref > 0) & (px_ref < 48)).float().mean() > 0.9  # the object box is in view
    assert (px_back - px_ref).abs().max() < 1e-3
    if layout in ("colmap-txt", "colmap-bin", "idr"):  # these layouts carry a box that must hold the object
        assert (back.bounds[0] <= ref.bounds[0] + 1e-5).all() and (back.bounds[1] >= ref.bounds[1] - 1e-5).all()
        assert ((back.bounds[1] - back.bounds[0]) < 2 * (ref.bounds[1] - ref.bounds[0]).max()).all()
    else:
        assert back.bounds is None
    if layout not in BLENDER_LAYOUTS:  # LLFF's test split: every 8th frame by name
        test = read_dataset(tmp_path / layout, "test")
        assert test.names == expected[::8] and len(read_dataset(tmp_path / layout, "train")) == 7


def test_blender_variants_and_masks(synthetic, tmp_path):
    _, ds = synthetic
    root = tmp_path / "ngp"
    (root / "imgs").mkdir(parents=True)
    frames = []
    for i in range(3):
        write_png(root / "imgs" / f"f{i}.png", ds.rgba[i, ..., :3].float())  # RGB + mask folder
        write_png(root / "masks" / f"f{i}.png", (ds.rgba[i, ..., 3:].float() > 0.5).float() * 0.8)  # grey mask
        frames.append({"file_path": ["./imgs/f0", "imgs/f1.png", "imgs/f2"][i],
                       "transform_matrix": ds.camera.c2w[i].tolist()})
    frames[1].update(fl_x=70.0, cx=20.0)  # per-frame values override the top level
    meta = {"camera_angle_x": 0.7, "fl_y": 60.0, "cy": 25.0, "w": 48, "h": 48, "frames": frames}
    (root / "transforms_train.json").write_text(json.dumps(meta))
    back = read_dataset(root, "train")
    fx0 = 24.0 / math.tan(0.35)
    assert torch.allclose(back.camera.fx.double(), torch.tensor([fx0, 70.0, fx0], dtype=torch.float64))
    assert torch.allclose(back.camera.fy, torch.full((3,), 60.0))
    assert back.camera.cx.tolist() == [24.0, 20.0, 24.0] and back.camera.cy.tolist() == [25.0] * 3
    assert back.names == ["f0", "f1", "f2"] and back.has_masks
    assert torch.equal(back.rgba[..., 3] > 0.5, ds.rgba[:3, ..., 3] > 0.5)
    shutil.rmtree(root / "masks")
    bare = read_dataset(root, "train")
    assert not bare.has_masks and bool((bare.rgba[..., 3] == 1).all())
    with pytest.raises(DataError, match="transforms_train.json"):  # no silent fallback to another split
        read_dataset(root, "val")


def test_colmap_axes_against_pinhole_formula(tmp_path):
    """A point with z > 0 in COLMAP's (OpenCV) camera frame lands where COLMAP's own formula puts it."""
    W, H, fx, fy, cx, cy = 64, 48, 50.0, 55.0, 30.5, 20.25
    g = torch.Generator().manual_seed(3)
    q = torch.nn.functional.normalize(torch.randn(4, generator=g, dtype=torch.float64), dim=0)
    t = torch.randn(3, generator=g, dtype=torch.float64)
    sparse = tmp_path / "sparse" / "0"
    sparse.mkdir(parents=True)
    (sparse / "cameras.txt").write_text(f"# c\n1 PINHOLE {W} {H} {fx} {fy} {cx} {cy}\n")
    (sparse / "images.txt").write_text("# i\n1 " + " ".join(map(repr, q.tolist() + t.tolist())) + " 1 a.png\n\n")
    write_png(tmp_path / "images" / "a.png", torch.zeros(H, W, 3))
    cam = read_dataset(tmp_path, "all", dtype=torch.float64).camera
    z = 2 + 3 * torch.rand(20, generator=g, dtype=torch.float64)
    uv = torch.rand(20, 2, generator=g, dtype=torch.float64) * torch.tensor([W, H], dtype=torch.float64)
    x_cam = torch.stack([(uv[:, 0] - cx) / fx * z, (uv[:, 1] - cy) / fy * z, z], -1)
    # COLMAP: x_cam = R x_world + t, u = fx x/z + cx, v = fy y/z + cy
    R = quaternion_to_rotation(q)
    x_world = (x_cam - t) @ R
    assert torch.allclose(cam.world_to_pixel(x_world)[0], uv, atol=1e-6)
    assert torch.allclose(cam.center[0], -R.T @ t)
    assert torch.allclose(cam.c2w[0, :3, 2], -R[2])  # OpenGL looks down -z = COLMAP's +z (optical axis)
    assert torch.allclose(rotation_to_quaternion(R), q if q[0] >= 0 else -q)


def test_idr_decomposition_and_llff_axes(tmp_path):
    g = torch.Generator().manual_seed(1)
    K = torch.tensor([[300.0, 0.0, 120.0], [0.0, 310.0, 90.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    R, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    R = R * torch.det(R)  # a proper rotation
    t = torch.randn(3, generator=g, dtype=torch.float64)
    P = K @ torch.cat([R, t[:, None]], 1)
    Kd, Rd, td = decompose_projection(-2.5 * P)  # projections are defined up to (negative) scale
    assert torch.allclose(Kd, K) and torch.allclose(Rd, R) and torch.allclose(td, t)
    # IDR file: pixel centres at integer coordinates, so our pixel = P X / w + 0.5.
    (tmp_path / "idr" / "image").mkdir(parents=True)
    write_png(tmp_path / "idr" / "image" / "000000.png", torch.zeros(180, 240, 3))
    scale = np.diag([2.0, 2.0, 2.0, 1.0])
    scale[:3, 3] = [1.0, -1.0, 0.5]
    np.savez(tmp_path / "idr" / "cameras.npz", world_mat_0=np.vstack([P.numpy(), [0, 0, 0, 1]]), scale_mat_0=scale)
    ds = read_dataset(tmp_path / "idr", "all", dtype=torch.float64)
    x_cam = torch.tensor([[0.2, -0.1, 3.0], [1.0, 0.5, 4.0], [-0.5, 0.3, 2.0]], dtype=torch.float64)
    X = (x_cam - t) @ R  # R^T (x_cam - t), points in front of the camera
    p = torch.cat([X, torch.ones(len(X), 1, dtype=torch.float64)], 1) @ P.T
    assert torch.allclose(ds.camera.world_to_pixel(X)[0], p[:, :2] / p[:, 2:] + 0.5, atol=1e-6)
    assert torch.allclose(ds.bounds, torch.tensor([[-1.0, -3.0, -1.5], [3.0, 1.0, 2.5]], dtype=torch.float64))
    # LLFF: camera at (0,0,5) looking at the origin, columns [down, right, back]; a point above the origin
    # must land above the image centre (smaller row).
    root = tmp_path / "llff"
    write_png(root / "images" / "a.png", torch.zeros(30, 40, 3))
    pose = np.array([[0, 1, 0, 0, 30], [-1, 0, 0, 0, 40], [0, 0, 1, 5, 35.0]])
    np.save(root / "poses_bounds.npy", np.concatenate([pose.reshape(-1), [1.0, 10.0]])[None])
    cam = read_dataset(root, "all").camera
    px = cam.world_to_pixel(torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))[0]
    assert torch.allclose(px, torch.tensor([[20.0, 15.0], [20.0, 8.0], [27.0, 15.0]]), atol=1e-4)
    assert (cam.near, cam.far) == pytest.approx((0.9, 11.0))


def _expect(exc, fragment, fn, *args, **kw):
    with pytest.raises(exc) as info:
        fn(*args, **kw)
    assert fragment in str(info.value), str(info.value)
    return str(info.value)


def test_malformed_blender(synthetic, tmp_path):
    root = _copy(synthetic, tmp_path)
    (root / "train" / "r_3.png").unlink()
    _expect(DataError, "r_3", read_dataset, root, "train")
    (root / "transforms_train.json").write_text('{"frames": [')
    _expect(DataError, "transforms_train.json", read_dataset, root, "train")
    meta = json.loads((root / "transforms_val.json").read_text())
    meta["frames"][1]["transform_matrix"][0][3] = float("nan")
    (root / "transforms_val.json").write_text(json.dumps(meta))
    msg = _expect(DataError, "transforms_val.json", read_dataset, root, "val")
    assert "frame 1" in msg and "NaN" in msg
    write_png(root / "test" / "r_2.png", torch.zeros(40, 48, 4))
    msg = _expect(DataError, "r_2.png", read_dataset, root, "test")
    assert "r_0.png" in msg  # names the image the size disagrees with


def test_malformed_colmap(synthetic, tmp_path):
    _, ds = synthetic
    root = tmp_path / "colmap"
    write_colmap(root, ds.camera, ds.names, ds.rgba)
    cams = root / "sparse" / "0" / "cameras.txt"
    line = cams.read_text().splitlines()[-1].split()
    for model, params, fragment in (("OPENCV", ["0", "0", "0", "0"], None),
                                    ("OPENCV", ["0.01", "0", "0", "0"], "image_undistorter"),
                                    ("OPENCV_FISHEYE", ["0", "0", "0", "0"], "OPENCV_FISHEYE")):
        cams.write_text(" ".join([line[0], model, *line[2:], *params]) + "\n")
        if fragment is None:  # zero distortion is a pinhole camera
            assert torch.allclose(read_dataset(root, "all").camera.fx, ds.camera.fx)
        else:
            msg = _expect(DataError, "cameras.txt", read_dataset, root, "all")
            assert fragment in msg
    (root / "sparse" / "0" / "cameras.txt").write_text(" ".join(line) + "\n")
    (root / "images" / "r_4.png").unlink()
    _expect(DataError, "r_4.png", read_dataset, root, "all")


def test_malformed_other_layouts(synthetic, tmp_path):
    _, ds = synthetic
    write_layout(ds, tmp_path / "json", "json")
    write_png(tmp_path / "json" / "masks" / "r_1.png", torch.zeros(20, 20, 1))
    msg = _expect(DataError, "masks/r_1.png", read_dataset, tmp_path / "json", "all")
    assert "r_1.png" in msg.replace("masks/r_1.png", "") and "20x20" in msg and "48x48" in msg
    (tmp_path / "json" / "r_1.png").unlink()
    _expect(DataError, "r_1.json", read_dataset, tmp_path / "json", "all")
    write_layout(ds, tmp_path / "llff", "llff")
    rows = np.load(tmp_path / "llff" / "poses_bounds.npy")
    rows[2, 3] = np.nan
    np.save(tmp_path / "llff" / "poses_bounds.npy", rows)
    _expect(DataError, "poses_bounds.npy", read_dataset, tmp_path / "llff", "all")
    write_layout(ds, tmp_path / "idr", "idr")
    (tmp_path / "idr" / "image" / "r_0.png").unlink()
    _expect(DataError, "cameras.npz", read_dataset, tmp_path / "idr", "all")
    (tmp_path / "unknown").mkdir()
    (tmp_path / "unknown" / "notes.txt").write_text("hi")
    msg = _expect(DataError, "unknown", read_dataset, tmp_path / "unknown")
    assert "cameras.npz" in msg and "poses_bounds.npy" in msg and "transforms" in msg
    _expect(DataError, "missing", read_dataset, tmp_path / "missing")
    _expect(InputError, "colmap-txt", write_layout, ds, tmp_path / "x", "colmap")
    _expect(DataError, "already holds files", write_layout, ds, tmp_path / "json", "json")
    cam = ds.camera[[0]]
    cam.cx = cam.cx + 3
    skewed = ds.subset([0])
    skewed.camera = cam
    _expect(InputError, "ngp", write_layout, skewed, tmp_path / "b", "blender")


def test_json_sidecar_variants_and_dtu_mask_names(synthetic, tmp_path):
    _, ds = synthetic
    root = tmp_path / "json"
    write_layout(ds.subset([0, 1]), root, "json")
    meta = json.loads((root / "r_1.json").read_text())
    c2w = torch.tensor(meta.pop("c2w"), dtype=torch.float64)
    K = [[meta.pop("fx"), 0, meta.pop("cx")], [0, meta.pop("fy"), meta.pop("cy")], [0, 0, 1]]
    w2c_cv = torch.linalg.inv(c2w * torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))
    (root / "r_1.json").write_text(json.dumps({**meta, "K": K, "w2c_opencv": w2c_cv.tolist()}))
    back = read_dataset(root, "all")
    assert (back.camera.c2w - ds.camera.c2w[:2]).abs().max() < 1e-5
    assert torch.allclose(back.camera.fx, ds.camera.fx[:2]) and torch.allclose(back.camera.cy, ds.camera.cy[:2])
    (root / "r_1.json").write_text(json.dumps({**meta, "K": K}))
    _expect(DataError, "r_1.json", read_dataset, root, "all")  # no pose at all
    # DTU names masks 000.png next to images 000000.png: paired by sorted order.
    write_layout(ds.subset([0, 1]), tmp_path / "idr", "idr")
    for i, name in enumerate(["r_0", "r_1"]):
        (tmp_path / "idr" / "image" / f"{name}.png").rename(tmp_path / "idr" / "image" / f"{i:06d}.png")
        (tmp_path / "idr" / "mask" / f"{name}.png").rename(tmp_path / "idr" / "mask" / f"{i:03d}.png")
    dtu = read_dataset(tmp_path / "idr", "all")
    assert dtu.names == ["000000", "000001"] and dtu.has_masks
    assert torch.equal(dtu.rgba[..., 3] > 0.5, ds.rgba[:2, ..., 3] > 0.5)


def test_a_dvr_object_folder_is_not_read_as_idr(tmp_path):
    from unrender.data.layouts import detect_layout

    np.savez(tmp_path / "cameras.npz", world_mat_0=np.eye(4), camera_mat_0=np.eye(4))
    with pytest.raises(DataError, match="read_dvr_object"):
        detect_layout(tmp_path)
