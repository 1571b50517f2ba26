import pytest
import torch

from conftest import shared_mesh_path
from unrender.errors import DataError
from unrender.geometry.primitives import box, torus
from unrender.io.mesh_files import load_mesh, save_mesh
from unrender.mesh import Mesh, PBRMaterial


def _textured_mesh():
    m = torus(0.4, 0.15, 24, 12)  # has uv seams, so uv indices differ from position indices
    g = torch.Generator().manual_seed(0)
    normal = torch.nn.functional.normalize(torch.randn(16, 16, 3, generator=g) * 0.3 + torch.tensor([0, 0, 1.0]),
                                           dim=-1)
    orm = torch.rand(16, 24, 3, generator=g)
    m.material = PBRMaterial(base_color=torch.rand(32, 16, 3, generator=g), orm=orm, normal=normal)
    return m


def _corners(m):
    return m.vertices[m.faces], m.uvs[m.uv_faces]


@pytest.mark.parametrize("ext", ["obj", "ply", "glb"])
def test_round_trip_geometry_and_uvs(tmp_path, ext):
    m = _textured_mesh()
    files = save_mesh(m, tmp_path / f"m.{ext}")
    assert all(f.exists() for f in files)
    back = load_mesh(tmp_path / f"m.{ext}")
    assert back.num_faces == m.num_faces and back.num_vertices == m.num_vertices  # seams welded back
    p0, t0 = _corners(m)
    p1, t1 = _corners(back)
    assert (p0 - p1).abs().max() < 1e-6
    assert (t0 - t1).abs().max() < 1e-6
    # Deterministic bytes.
    again = save_mesh(m, tmp_path / "again" / f"m.{ext}")
    assert [f.name for f in files] == [f.name for f in again]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(files, again))


@pytest.mark.parametrize("ext", ["obj", "glb"])
def test_round_trip_textures(tmp_path, ext):
    m = _textured_mesh()
    save_mesh(m, tmp_path / f"m.{ext}")
    if ext == "obj":
        assert {"texture_kd.png", "texture_ks.png", "texture_n.png"} <= {p.name for p in tmp_path.iterdir()}
    mat = load_mesh(tmp_path / f"m.{ext}").material
    for name, tol in (("base_color", 0.01), ("orm", 0.5 / 255 + 1e-6), ("normal", 1.0 / 255 + 1e-6)):
        a, b = getattr(m.material, name), getattr(mat, name)
        assert b is not None and b.shape == a.shape, name
        assert (a - b).abs().max() <= tol, name


def test_obj_keeps_separate_uv_indices_and_constant_material(tmp_path):
    m = box((1.0, 0.5, 0.25), subdivisions=2)
    m.material = PBRMaterial(base_color_factor=torch.tensor([0.2, 0.4, 0.6]), roughness_factor=0.3,
                             metallic_factor=0.7)
    save_mesh(m, tmp_path / "b.obj")
    back = load_mesh(tmp_path / "b.obj")
    assert torch.equal(back.faces, m.faces) and torch.equal(back.uv_faces, m.uv_faces)
    assert back.uvs.shape[0] != back.vertices.shape[0]
    assert back.material.roughness_factor == pytest.approx(0.3)
    assert back.material.metallic_factor == pytest.approx(0.7)
    assert torch.allclose(back.material.base_color_factor, torch.tensor([0.2, 0.4, 0.6]), atol=1e-4)


def test_obj_polygons_negative_indices_and_vertex_colors(tmp_path):
    (tmp_path / "q.obj").write_text("v 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 1 1 0 0 0 1\nv 0 1 0 1 1 1\n"
                                    "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nf -4/-4 -3/-3 -2/-2 -1/-1\n")
    m = load_mesh(tmp_path / "q.obj")
    assert m.faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    assert torch.allclose(m.vertex_colors[0], torch.tensor([1.0, 0.0, 0.0]))


def test_ply_vertex_colors(tmp_path):
    m = box((1.0, 1.0, 1.0), subdivisions=1)
    m.vertex_colors = torch.rand(m.num_vertices, 3, generator=torch.Generator().manual_seed(0))
    save_mesh(m, tmp_path / "c.ply")
    back = load_mesh(tmp_path / "c.ply")
    assert (back.vertex_colors[back.faces] - m.vertex_colors[m.faces]).abs().max() < 0.01


def test_glb_opens_in_trimesh_with_pbr_slots(tmp_path):
    import trimesh

    save_mesh(_textured_mesh(), tmp_path / "m.glb")
    scene = trimesh.load(tmp_path / "m.glb")
    geom = next(iter(scene.geometry.values()))
    mat = geom.visual.material
    assert mat.baseColorTexture is not None and mat.metallicRoughnessTexture is not None
    assert mat.normalTexture is not None and mat.occlusionTexture is not None


@pytest.mark.parametrize("folder,name", [("spot", "spot.obj"), ("bob", "bob_tri.obj")])
def test_shared_meshes_load(folder, name):
    path = shared_mesh_path(folder) / name
    m = load_mesh(path)
    assert m.num_faces > 1000 and m.uvs is not None and m.uv_faces.shape == m.faces.shape
    assert torch.isfinite(m.uvs).all() and float(((m.uvs >= 0) & (m.uvs <= 1)).float().mean()) > 0.99
    tex = m.material.base_color
    assert tex is not None and tex.dim() == 3 and tex.shape[-1] == 3
    assert 0 <= float(tex.min()) and float(tex.max()) <= 1


def test_shared_mesh_round_trip(tmp_path):
    path = shared_mesh_path("spot") / "spot.obj"
    m = load_mesh(path)
    save_mesh(m, tmp_path / "spot.glb")
    back = load_mesh(tmp_path / "spot.glb")
    assert back.num_vertices == m.num_vertices and back.num_faces == m.num_faces
    assert (back.material.base_color - m.material.base_color).abs().max() < 0.01


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("name,text", [
    ("nan.obj", "v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n"),
    ("range.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n"),
    ("nofaces.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n"),
    ("garbage.obj", "v 0 zero 0\nf 1 2 3\n"),
    ("nofaces.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                    "property float z\nend_header\n0 0 0\n1 0 0\n0 1 0\n"),
    ("range.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                  "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
                  "0 0 0\n1 0 0\n0 1 0\n3 0 1 9\n"),
    ("broken.glb", "glTF this is not a real binary"),
])
def test_bad_files_raise_data_error_naming_file(tmp_path, name, text):
    p = _write(tmp_path, name, text)
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        load_mesh(p)


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(DataError, match="absent.obj"):
        load_mesh(tmp_path / "absent.obj")
    with pytest.raises(DataError, match="mesh.stl"):
        load_mesh(_write(tmp_path, "mesh.stl", "solid x\nendsolid x\n"))
    obj = _write(tmp_path, "t.obj", "mtllib t.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    _write(tmp_path, "t.mtl", "newmtl a\nmap_Kd nowhere.png\n")
    with pytest.raises(DataError, match="nowhere.png"):
        load_mesh(obj)
    with pytest.raises(DataError, match="x.fbx"):
        save_mesh(Mesh(torch.zeros(3, 3), torch.tensor([[0, 1, 2]])), tmp_path / "x.fbx")


@pytest.mark.parametrize("ext", ["obj", "glb", "ply"])
def test_empty_mesh_is_refused_clearly_and_writes_nothing(tmp_path, ext):
    from unrender.errors import InputError

    empty = Mesh(vertices=torch.zeros(0, 3), faces=torch.zeros(0, 3, dtype=torch.long))
    with pytest.raises(InputError, match="no triangles"):
        save_mesh(empty, tmp_path / "out" / f"mesh.{ext}")
    assert not (tmp_path / "out").exists()
