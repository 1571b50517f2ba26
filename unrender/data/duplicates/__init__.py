"""Synthetic scenes for Structure from Duplicates: one photo of N identical objects (see :mod:`.synthesize`)."""

from .layout import Layout, random_layout
from .synthesize import gt_object_to_camera, synthesize_duplicates

__all__ = ["Layout", "gt_object_to_camera", "random_layout", "synthesize_duplicates"]
