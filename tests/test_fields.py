import math

import pytest
import torch

from unrender.errors import InputError
from unrender.geometry.fields import GridEncoding, MaterialField


def _reference_level(x, grid, res):
    """Trilinear interpolation of a dense [F,n,n,n] (z,y,x) grid written out corner by corner."""
    p = x * res
    i0 = torch.floor(p).clamp(0, res - 1).long()
    f = p - i0
    out = 0
    for c in range(8):
        o = torch.tensor([c & 1, (c >> 1) & 1, (c >> 2) & 1])
        idx = i0 + o
        w = torch.where(o.bool(), f, 1 - f).prod(-1, keepdim=True)
        out = out + w * grid[:, idx[:, 2], idx[:, 1], idx[:, 0]].t()
    return out


def test_dense_level_is_trilinear_interpolation():
    enc = GridEncoding(levels=2, features=3, min_res=4, max_res=8, table_size=2 ** 12).double()
    with torch.no_grad():
        for p in enc.dense:
            p.normal_()
    x = torch.rand(50, 3, dtype=torch.float64)
    got = enc(x)
    for k, res in enumerate(enc.resolutions):
        ref = _reference_level(x, enc.dense[k][0], res)
        assert torch.allclose(got[:, 3 * k:3 * k + 3], ref, atol=1e-10)


def test_hashed_level_returns_its_table_rows_at_grid_vertices():
    # At a grid vertex the trilinear weights are one-hot: the output is the hashed table row of that vertex.
    enc = GridEncoding(levels=1, features=2, min_res=8, max_res=8, table_size=500).double()
    assert enc._kinds[0][0] == "hash"
    with torch.no_grad():
        enc.hashed[0].normal_()
    verts = torch.tensor([[1, 2, 3], [4, 4, 0], [7, 1, 5]], dtype=torch.float64)
    got = enc(verts / 8)
    idx = verts.long()
    h = (idx[:, 0] * 1) ^ (idx[:, 1] * 2654435761) ^ (idx[:, 2] * 805459861)
    assert torch.allclose(got, enc.hashed[0][h % 500])


def test_encoding_gradcheck():
    enc = GridEncoding(levels=2, features=2, min_res=2, max_res=6, table_size=40).double()
    with torch.no_grad():
        for p in enc.parameters():
            p.normal_()
    x = (torch.rand(6, 3, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda y: enc(y), (x,), eps=1e-6, atol=1e-5)


def test_material_field_ranges_and_learning():
    torch.manual_seed(0)
    box = torch.tensor([[-1.0, -1, -1], [1, 1, 1]])
    field = MaterialField(box, levels=4, max_res=32, min_roughness=0.1)
    pts = torch.rand(256, 3) * 2 - 1
    kd, orm = field(pts)
    assert kd.min() >= 0 and kd.max() <= 1
    assert torch.all(orm[:, 0] == 1) and orm[:, 1].min() >= 0.1 and orm[:, 2].max() <= 1
    target = torch.stack([(pts[:, 0] > 0).float(), 0.5 * torch.ones(256), 1 - (pts[:, 0] > 0).float()], -1)
    opt = torch.optim.Adam(field.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        kd, _ = field(pts)
        loss = (kd - target).abs().mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first


def test_material_field_normal_offset_is_bounded_and_learns():
    box = torch.tensor([[-1.0, -1, -1], [1, 1, 1]])
    torch.manual_seed(0)
    field = MaterialField(box, levels=4, max_res=32, normal_offset=0.3)
    pts = torch.rand(256, 3) * 2 - 1
    base, orm, offset = field(pts)
    assert base.shape == orm.shape == offset.shape == (256, 3)
    assert len(MaterialField(box, levels=4, max_res=32)(pts)) == 2  # no offset output unless asked
    target = 0.2 * torch.stack([pts[:, 0].sign(), torch.zeros(256), -pts[:, 2].sign()], -1)
    opt = torch.optim.Adam(field.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        loss = (field(pts)[2] - target).square().mean()
        loss.backward()
        opt.step()
    offset = field(pts)[2]
    assert float(offset.abs().max()) <= 0.3 and float((offset - target).abs().mean()) < 0.03
    with pytest.raises(InputError, match="normal_offset"):
        MaterialField(box, normal_offset=-1.0)


def test_bad_arguments():
    with pytest.raises(InputError, match="levels"):
        GridEncoding(levels=0)
    with pytest.raises(InputError, match="bounds"):
        MaterialField(torch.tensor([[1.0, 1, 1], [0, 0, 0]]))
    assert math.isclose(GridEncoding(levels=3, features=4).out_dim, 12)
