"""Structure from Duplicates input: the synthetic scene writer and read_duplicates_input's masks, errors, intrinsics."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from unrender.data.duplicates import synthesize_duplicates
from unrender.errors import InputError
from unrender.io.images import write_png
from unrender.recon.duplicates import read_duplicates_input


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return synthesize_duplicates(tmp_path_factory.mktemp("dup") / "scene", copies=3, resolution=128, seed=5,
                                 texture_resolution=64)


def _png(path, a):
    Image.fromarray(np.asarray(a)).save(path)
    return path


def test_synth_writes_scene_with_one_label_per_copy(scene):
    for name in ("image.png", "instances.png", "camera.json", "gt/mesh.obj", "gt/mesh.glb", "gt/poses.json",
                 "gt/probe.hdr", "gt/scene.json"):
        assert (scene / name).is_file(), name
    labels = np.asarray(Image.open(scene / "instances.png"))
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2, 3]
    poses = json.loads((scene / "gt" / "poses.json").read_text())
    assert np.array(poses["object_to_world"]).shape == (3, 4, 4)
    assert all(v > 0 for v in poses["visible_pixels"])
    cam = json.loads((scene / "camera.json").read_text())
    assert cam["width"] == cam["height"] == 128
    assert cam["focal"] == pytest.approx(64 / np.tan(np.radians(cam["fov_deg"]) / 2))
    # Copies stand on the ground (y = 0 plane) and do not overlap: centres further apart than their footprints.
    centres = np.array(poses["object_to_world"])[:, [0, 2], 3]
    d = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(3) * 10
    assert d.min() > 0.5


def test_synth_same_seed_same_bytes(scene, tmp_path):
    again = synthesize_duplicates(tmp_path / "again", copies=3, resolution=128, seed=5, texture_resolution=64)
    for name in ("image.png", "instances.png", "camera.json", "gt/poses.json"):
        assert (again / name).read_bytes() == (scene / name).read_bytes(), name
    other = synthesize_duplicates(tmp_path / "other", copies=3, resolution=128, seed=6, texture_resolution=64)
    assert (other / "image.png").read_bytes() != (scene / "image.png").read_bytes()


def test_read_synth_scene(scene):
    data = read_duplicates_input(scene / "image.png", scene / "instances.png", fov=40)
    assert data.masks.shape == (3, 128, 128) and data.masks.dtype == torch.bool
    labels = np.asarray(Image.open(scene / "instances.png"))
    for k in range(3):
        assert np.array_equal(data.masks[k].numpy(), labels == k + 1)
    cam = json.loads((scene / "camera.json").read_text())
    assert data.intrinsics.fx == pytest.approx(cam["focal"])
    assert data.image.shape == (128, 128, 3) and float(data.image.max()) <= 1.0


def test_any_label_values_and_mask_folder(scene, tmp_path):
    lab = np.zeros((128, 128), np.uint8)
    lab[10:30, 10:30], lab[50:90, 60:100] = 200, 10
    data = read_duplicates_input(scene / "image.png", _png(tmp_path / "lab.png", lab), focal=150.0)
    assert data.labels == ["10", "200"] and data.masks.sum().item() == 400 + 1600
    folder = tmp_path / "masks"
    folder.mkdir()
    _png(folder / "a.png", (lab == 10).astype(np.uint8) * 255)
    _png(folder / "b.png", (lab == 200).astype(np.uint8) * 255)
    data = read_duplicates_input(scene / "image.png", folder, fov=40)
    assert data.labels == ["a.png", "b.png"] and data.masks[1].sum().item() == 400


def test_bad_masks_raise_input_error_naming_the_file(scene, tmp_path):
    image = scene / "image.png"
    small = _png(tmp_path / "small.png", np.ones((64, 64), np.uint8))
    with pytest.raises(InputError, match="small.png.*size"):
        read_duplicates_input(image, small, fov=40)
    one = np.zeros((128, 128), np.uint8)
    one[10:40, 10:40] = 1
    with pytest.raises(InputError, match="one.png.*at least 2"):
        read_duplicates_input(image, _png(tmp_path / "one.png", one), fov=40)
    tiny = one.copy()
    tiny[100, 100:103] = 2  # 3 pixels: an empty instance
    with pytest.raises(InputError, match="tiny.png.*empty"):
        read_duplicates_input(image, _png(tmp_path / "tiny.png", tiny), fov=40)
    folder = tmp_path / "folder"
    folder.mkdir()
    _png(folder / "a.png", one * 255)
    _png(folder / "b.png", np.zeros((128, 128), np.uint8))
    with pytest.raises(InputError, match="b.png.*empty"):
        read_duplicates_input(image, folder, fov=40)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not a png")
    with pytest.raises(InputError, match="garbage.png"):
        read_duplicates_input(image, garbage, fov=40)
    with pytest.raises(InputError, match="garbage.png"):
        read_duplicates_input(garbage, scene / "instances.png", fov=40)
    with pytest.raises(InputError, match="missing.png"):
        read_duplicates_input(image, tmp_path / "missing.png", fov=40)


def test_connected_components_fallback(tmp_path):
    rgba = torch.zeros(64, 64, 4)
    rgba[..., :3] = 0.5
    rgba[5:20, 5:20, 3] = 1.0
    rgba[30:60, 30:50, 3] = 1.0
    write_png(tmp_path / "rgba.png", rgba)
    with pytest.warns(UserWarning, match="connected components"):
        data = read_duplicates_input(tmp_path / "rgba.png", fov=40)
    assert data.num_instances == 2
    assert sorted(m.sum().item() for m in data.masks) == [225, 600]
    write_png(tmp_path / "rgb.png", rgba[..., :3])
    with pytest.raises(InputError, match="rgb.png.*alpha"):
        read_duplicates_input(tmp_path / "rgb.png", fov=40)


def test_intrinsics_default_warns_and_conflicts_raise(scene):
    with pytest.warns(UserWarning, match="field of view"):
        data = read_duplicates_input(scene / "image.png", scene / "instances.png")
    assert data.intrinsics.estimated and data.intrinsics.fov_deg == pytest.approx(50.0)
    with pytest.raises(InputError, match="not both"):
        read_duplicates_input(scene / "image.png", scene / "instances.png", fov=40, focal=100)
