"""Differentiable rendering ops in nvdiffrast's shape, shading and lights.

Example:
    >>> import torch
    >>> from unrender.render import rasterize, interpolate
    >>> pos = torch.tensor([[-1., -1, 0, 1], [1, -1, 0, 1], [-1, 1, 0, 1]])
    >>> tri = torch.tensor([[0, 1, 2]])
    >>> interpolate(torch.eye(3), rasterize(pos, tri, (4, 4)), tri).shape
    torch.Size([1, 4, 4, 3])
"""

from .antialias import EdgeTopology, antialias, build_topology
from .mipmap import MipStack, build_mip
from .rasterize import (barycentric_derivatives, interpolate, interpolate_derivatives, rasterize)
from .render_mesh import RenderOutput, render_mesh
from .soft_silhouette import soft_silhouette
from .texture import texture

__all__ = ["rasterize", "interpolate", "barycentric_derivatives", "interpolate_derivatives", "texture",
           "build_mip", "MipStack", "antialias", "build_topology", "EdgeTopology", "soft_silhouette",
           "render_mesh", "RenderOutput"]
