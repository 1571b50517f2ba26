"""Writer for the NeRF-synthetic (Blender) dataset layout (kept for existing imports).

The implementation lives in :mod:`unrender.data.layouts.blender` together with the reader; this module
re-exports :func:`write_nerf_synthetic` unchanged.

See that module for the format and an example.
"""

from __future__ import annotations

from .layouts.blender import write_nerf_synthetic

__all__ = ["write_nerf_synthetic"]
