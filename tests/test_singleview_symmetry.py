"""Mirror symmetry of DIB-R predictions: the template permutation, the symmetrized output, detection on collections."""

import numpy as np
import pytest
import torch

from unrender.cameras import Camera, look_at
from unrender.data.collection import write_collection_lists, write_dvr_object
from unrender.errors import InputError
from unrender.geometry.primitives import icosphere_arrays
from unrender.singleview import DIBRPredictor
from unrender.singleview.symmetry import detect_mirror_axis, mirror_permutation, mirror_scores, symmetrize

FLIP = {"x": torch.tensor([-1.0, 1.0, 1.0]), "y": torch.tensor([1.0, -1.0, 1.0]), "z": torch.tensor([1.0, 1.0, -1.0])}


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_icosphere_mirror_permutation_is_an_involution_onto_mirrored_vertices(axis):
    verts = torch.tensor(icosphere_arrays(3)[0], dtype=torch.float64)
    perm = mirror_permutation(verts, axis)
    assert torch.equal(perm[perm], torch.arange(len(verts)))
    assert torch.allclose(verts[perm], verts * FLIP[axis].double(), atol=1e-9)
    assert len(set(perm.tolist())) == len(verts)


def test_mirror_permutation_refuses_an_asymmetric_template():
    verts = torch.tensor([[0.3, 0.0, 0.0], [-0.5, 0.0, 0.0]])
    with pytest.raises(InputError, match="not mirror symmetric"):
        mirror_permutation(verts, "x")


def test_symmetrize_keeps_symmetric_shapes_and_projects_others():
    verts = torch.tensor(icosphere_arrays(2)[0], dtype=torch.float64)
    perm = mirror_permutation(verts, "x")
    sym = verts[None] * torch.tensor([0.7, 1.2, 0.4], dtype=torch.float64)  # an ellipsoid: already symmetric
    assert torch.allclose(symmetrize(sym, perm, "x"), sym, atol=1e-12)
    noisy = sym + 0.05 * torch.randn_like(sym)
    out = symmetrize(noisy, perm, "x")
    assert torch.allclose(out[:, perm] * FLIP["x"].double(), out, atol=1e-12)
    assert torch.allclose(symmetrize(out, perm, "x"), out, atol=1e-12)  # a projection
    # the symmetric part is closer to the symmetric truth than the noisy input
    assert (out - sym).norm() < (noisy - sym).norm()


def test_symmetric_predictor_outputs_mirror_images_and_trains_every_offset():
    torch.manual_seed(0)
    model = DIBRPredictor(in_channels=3, widths=(4, 8), feature_dim=16, hidden_dim=16, symmetry="x")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    out = model(torch.rand(2, 3, 32, 32))
    v = out.vertices
    assert torch.allclose(v[:, model.mirror] * FLIP["x"], v, atol=1e-6)
    assert v[..., 0].abs().max() > 0.1  # not collapsed onto the plane
    v.sum().backward()
    assert model.offset_head.weight.grad.abs().sum() > 0
    # the mirror index is not saved: a free model loads a symmetric model's weights and vice versa
    assert "mirror" not in model.state_dict()
    DIBRPredictor(in_channels=3, widths=(4, 8), feature_dim=16, hidden_dim=16).load_state_dict(model.state_dict())


def _ellipsoid_points(rng, centre, n=3000):
    d = rng.normal(size=(n, 3))
    return (d / np.linalg.norm(d, axis=1, keepdims=True)) * [0.3, 0.2, 0.1] + centre


def test_mirror_scores_separate_symmetric_from_shifted_shapes():
    rng = np.random.default_rng(0)
    scores = mirror_scores(_ellipsoid_points(rng, [0.0, 0.15, 0.0]), rng)  # symmetric about x=0 and z=0 only
    assert scores["x"] < 1.5 and scores["z"] < 1.5 and scores["y"] > 3.0


def _points_collection(root, centres):
    """One training object per centre: an ellipsoid's surface points in ``pointcloud.npz`` (images irrelevant)."""
    rng = np.random.default_rng(1)
    cam = Camera.from_fov(50.0, 8, 8, look_at((0.0, 0.0, 2.0)))
    names = []
    for i, c in enumerate(centres):
        p = torch.tensor(_ellipsoid_points(rng, c))
        write_dvr_object(root / "00000001" / f"m{i}", torch.ones(1, 8, 8, 3), torch.ones(1, 8, 8), cam,
                         points=p, normals=p)
        names.append(f"m{i}")
    write_collection_lists(root, {"train": {"00000001": names}, "val": {}, "test": {}}, {"00000001": "blob"})
    return root


def test_detect_mirror_axis_finds_the_shared_plane_and_refuses_when_there_is_none(tmp_path):
    # every object is symmetric about z=0; x=0 only for some, y=0 for none
    mixed = [[0.0, 0.1, 0.0], [0.2, 0.0, 0.0], [0.0, -0.1, 0.0], [0.15, 0.1, 0.0]]
    assert detect_mirror_axis(_points_collection(tmp_path / "a", mixed)) == "z"
    shifted = [[0.1, 0.1, 0.1], [-0.2, 0.1, 0.15], [0.1, -0.1, -0.1]]
    assert detect_mirror_axis(_points_collection(tmp_path / "b", shifted)) == "none"
