"""Writer for the NeRF-synthetic (Blender) dataset layout (kept for existing imports).

The implementation lives in :mod:`unrender.data.layouts.blender` together with the reader; this module
re-exports :func:`write_nerf_synthetic` unchanged.

Example:
    >>> import torch, tempfile
    >>> d = tempfile.mkdtemp()
    >>> files = write_nerf_synthetic(d, {"train": [("r_0", torch.eye(4), torch.ones(4, 4, 4))]}, 0.69)
    >>> sorted(p.name for p in files)
    ['r_0.png', 'transforms_train.json']
"""

from __future__ import annotations

from .layouts.blender import write_nerf_synthetic

__all__ = ["write_nerf_synthetic"]
