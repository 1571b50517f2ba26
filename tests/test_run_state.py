"""Run-state helpers: deterministic kernels within a block, and the previous setting restored after it."""

import torch

from unrender.run_state import deterministic_kernels


def _index_gradient(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    x = values.clone().requires_grad_()
    (x[index] * torch.linspace(0.1, 1.0, index.numel())[:, None]).sum().backward()
    return x.grad


def test_deterministic_kernels_is_scoped_and_restores_the_previous_setting():
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_kernels():
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()  # ops without such a kernel still run
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_kernels(enabled=False):
        assert not torch.are_deterministic_algorithms_enabled()


def test_index_gradients_repeat_bit_for_bit_inside_the_block():
    # many float32 rows gathered with repeats: the accumulating backward that is racy with several threads
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(500, 3, generator=gen)
    index = torch.randint(0, 500, (60000,), generator=gen)
    with deterministic_kernels():
        grads = [_index_gradient(values, index) for _ in range(4)]
    assert all(torch.equal(g, grads[0]) for g in grads[1:])
    reference = torch.zeros(500, 3, dtype=torch.float64).index_add_(
        0, index, torch.linspace(0.1, 1.0, index.numel(), dtype=torch.float64)[:, None].expand(-1, 3))
    assert torch.allclose(grads[0].double(), reference, rtol=1e-4)
