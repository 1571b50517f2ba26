"""Argument checks shared by every public op.

The ops accept what a user naturally has (float64 tensors, non-contiguous views,
int32 index buffers) and convert it; anything that cannot be converted is refused
with an :class:`~unrender.errors.InputError` naming the argument and the expected
shape. Checks are explicit ``if``/``raise``, never ``assert``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import InputError

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def float_tensor(name: str, x, shape: str, last_dim: int | None = None,
                 ndims: Sequence[int] | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Return ``x`` as a contiguous floating tensor, or raise naming ``name``.

    Args:
        name: argument name used in the error message.
        x: tensor (or array-like) to check.
        shape: human-readable expected shape, e.g. ``"[B,V,4]"``.
        last_dim: required size of the last dimension, if any.
        ndims: allowed numbers of dimensions, if restricted.
        dtype: convert to this dtype; default keeps float32/float64 and promotes others to float32.
    """
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except Exception as exc:  # noqa: BLE001 - re-raised with context
            raise InputError(f"{name} must be a tensor of shape {shape}; got {type(x).__name__}.") from exc
    if ndims is not None and x.dim() not in ndims:
        raise InputError(f"{name} must have shape {shape}; got {tuple(x.shape)}.")
    if last_dim is not None and (x.dim() == 0 or x.shape[-1] != last_dim):
        raise InputError(f"{name} must have shape {shape} (last dimension {last_dim}); got {tuple(x.shape)}.")
    if dtype is None:
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    if x.dtype != dtype:
        if x.dtype == torch.bool or x.is_complex():
            raise InputError(f"{name} must be a real floating tensor of shape {shape}; got dtype {x.dtype}.")
        x = x.to(dtype)
    return x.contiguous()


def index_tensor(name: str, x, shape: str, last_dim: int | None = None, num_vertices: int | None = None,
                 device: torch.device | None = None) -> torch.Tensor:
    """Return ``x`` as a contiguous int64 index tensor, checking range against ``num_vertices``."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.is_floating_point() or x.dtype == torch.bool or x.is_complex():
        raise InputError(f"{name} must be an integer tensor of shape {shape}; got dtype {x.dtype}.")
    if last_dim is not None and (x.dim() != 2 or x.shape[-1] != last_dim):
        raise InputError(f"{name} must have shape {shape}; got {tuple(x.shape)}.")
    x = x.to(device=device if device is not None else x.device, dtype=torch.int64).contiguous()
    if num_vertices is not None and x.numel() > 0:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= num_vertices:
            raise InputError(f"{name} holds indices in [{lo}, {hi}] but there are only {num_vertices} vertices; "
                             f"indices must lie in [0, {num_vertices - 1}].")
    return x


def resolution_pair(resolution) -> tuple[int, int]:
    """Normalise ``resolution`` (int or (H, W)) to a pair of positive ints."""
    if isinstance(resolution, int):
        resolution = (resolution, resolution)
    try:
        h, w = (int(r) for r in resolution)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"resolution must be (H, W) of positive integers; got {resolution!r}.") from exc
    if h <= 0 or w <= 0:
        raise InputError(f"resolution must be (H, W) of positive integers; got {resolution!r}.")
    return h, w


def same_device(*named: tuple[str, torch.Tensor]) -> torch.device:
    """Raise unless every tensor lies on the same device; return that device."""
    devices = {t.device for _, t in named}
    if len(devices) > 1:
        desc = ", ".join(f"{n} on {t.device}" for n, t in named)
        raise InputError(f"all tensors must be on one device; got {desc}. Move them with .to(device).")
    return next(iter(devices))
