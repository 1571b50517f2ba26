import pytest
import torch

from unrender.errors import InputError
from unrender.geometry.primitives import icosphere
from unrender.geometry.smoothing import taubin_smooth


def _volume(v, f):
    return float((v[f[:, 0]] * torch.linalg.cross(v[f[:, 1]], v[f[:, 2]], dim=-1)).sum() / 6)


def test_taubin_removes_ripples_without_shrinking():
    s = icosphere(3)
    g = torch.Generator().manual_seed(0)
    noisy = s.vertices * (1 + 0.03 * torch.randn(s.vertices.shape[0], 1, generator=g))
    out = taubin_smooth(noisy, s.faces, iterations=10)
    r_noisy, r_out = noisy.norm(dim=-1), out.norm(dim=-1)
    assert r_out.std() < 0.5 * r_noisy.std()
    assert abs(_volume(out, s.faces) / _volume(s.vertices, s.faces) - 1) < 0.03  # Taubin does not shrink
    assert torch.equal(taubin_smooth(noisy, s.faces, iterations=0), noisy)


def test_taubin_keeps_a_plane_flat_and_checks_arguments():
    xs = torch.linspace(0, 1, 6)
    y, x = torch.meshgrid(xs, xs, indexing="ij")
    v = torch.stack([x.reshape(-1), y.reshape(-1), torch.zeros(36)], -1)
    idx = torch.arange(36).reshape(6, 6)
    q = torch.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]], -1).reshape(-1, 4)
    f = torch.cat([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])
    out = taubin_smooth(v, f, iterations=5)
    assert out[:, 2].abs().max() == 0
    with pytest.raises(InputError, match="lamb"):
        taubin_smooth(v, f, lamb=0.5, mu=-0.4)
    with pytest.raises(InputError, match="iterations"):
        taubin_smooth(v, f, iterations=-1)
