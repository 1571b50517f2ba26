"""The silhouette Chamfer loss: geometry of its two terms, gradients against finite differences, and reach."""
import pytest
import torch

from unrender.cameras import Camera, look_at
from unrender.errors import InputError
from unrender.geometry.primitives import icosphere_arrays
from unrender.singleview.dibr import DIBRLossWeights, DIBROutput, dibr_losses
from unrender.singleview.silhouette_chamfer import outside_distance, silhouette_chamfer_loss

SIZE = 32


def camera(dtype=torch.float32):
    return Camera.from_fov(40, SIZE, SIZE, look_at(torch.tensor([[0.0, 0, 3]]))).to(dtype=dtype)


def disc(cx, cy, r):
    rows, cols = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    return (((cols - cx) ** 2 + (rows - cy) ** 2) < r * r).float()


def sphere(radius=0.3, subdivisions=3, dtype=torch.float32):
    return torch.tensor(icosphere_arrays(subdivisions)[0] * radius, dtype=dtype)[None]


def test_projection_puts_up_at_the_top_and_matches_the_distance_transform():
    cam = camera()
    up_right = cam.world_to_pixel(torch.tensor([[[0.0, 0.5, 0.0], [0.5, 0.0, 0.0]]]))[0]
    assert up_right[0, 1] < SIZE / 2 - 2 and up_right[0, 0] == pytest.approx(SIZE / 2)  # +y: above the centre
    assert up_right[1, 0] > SIZE / 2 + 2 and up_right[1, 1] == pytest.approx(SIZE / 2)  # +x: right of it
    mask = torch.zeros(1, 4, 6)
    mask[0, 1, 1] = 1
    expected = torch.tensor([[((i - 1) ** 2 + (j - 1) ** 2) ** 0.5 for j in range(6)] for i in range(4)])
    assert torch.allclose(outside_distance(mask)[0], expected)


def test_terms_vanish_on_the_right_outline_and_grow_with_either_error():
    cam, v = camera(), sphere()  # projects to a disc of radius 4.41 px about the image centre
    loss = lambda verts, m: silhouette_chamfer_loss(verts, cam, m[None], generator=torch.Generator().manual_seed(0))
    right = loss(v, disc(16, 16, 4.5)).item()
    assert right < 0.002  # only the mask's pixel staircase
    assert loss(1.5 * v, disc(16, 16, 4.5)).item() > 10 * right  # vertices outside the mask
    with_far_blob = disc(16, 16, 4.5) + disc(27, 27, 2.5)
    assert loss(v, with_far_blob).item() > 10 * right  # mask pixels with no vertex near them
    with pytest.raises(InputError, match="masks"):
        silhouette_chamfer_loss(v, cam, torch.zeros(1, SIZE, SIZE + 1))


def test_gradient_matches_finite_differences_in_float64():
    cam = camera(torch.float64)
    torch.manual_seed(0)
    v = (sphere(0.3, 1, torch.float64) + 0.02 * torch.randn(1, 42, 3, dtype=torch.float64)).requires_grad_(True)
    mask = (disc(14.3, 17.1, 3.7) + disc(26, 8, 2.2)).clamp(max=1).double()[None]

    def f(x):  # the same mask samples on every call
        return silhouette_chamfer_loss(x, cam, mask, samples=64, generator=torch.Generator().manual_seed(3))

    assert torch.autograd.gradcheck(f, (v,), eps=1e-6, atol=1e-6)


def test_its_gradient_reaches_a_mask_part_the_soft_silhouette_does_not():
    cam, v0 = camera(), sphere()
    mask = (disc(16, 16, 4.5) + disc(27, 27, 2.5)).clamp(max=1)[None, None]  # [B=1, K=1, H, W]
    rgb = torch.zeros(1, 1, SIZE, SIZE, 3)
    blob = torch.tensor([27.0, 27.0])

    def reach_after(weight):
        v = v0.clone().requires_grad_(True)
        opt = torch.optim.Adam([v], lr=0.01)
        w = DIBRLossWeights(color=0.0, laplacian=0.0, flatten=0.0, silhouette_chamfer=weight)
        for _ in range(60):
            loss = dibr_losses(DIBROutput(v, torch.full_like(v, 0.5), torch.tensor(icosphere_arrays(3)[1])),
                               cam, mask, rgb, w)["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        return (cam.world_to_pixel(v.detach())[0] - blob).norm(dim=-1).min().item()

    start = (cam.world_to_pixel(v0)[0] - blob).norm(dim=-1).min().item()
    assert reach_after(0.0) > start - 1.0  # the IoU loss alone: the blob is beyond the soft silhouette's reach
    assert reach_after(10.0) < 3.0  # with the Chamfer a vertex crosses the gap into the blob (radius 2.5 px)
