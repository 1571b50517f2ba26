"""Reconstruction pipelines: one module per capability (visual hull baseline, multi-view, single-view, ...)."""
