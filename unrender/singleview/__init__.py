"""Single-view reconstruction models: one image -> a coloured template mesh (DIB-R) or an SDF (LIST-style).

Both models work on tensors (images ``[B,C,H,W]``, cameras, SDF samples); dataset reading and the training
loop live elsewhere.

Example:
    >>> import torch
    >>> from unrender.singleview import DIBRPredictor
    >>> DIBRPredictor()(torch.rand(1, 4, 64, 64)).vertices.shape
    torch.Size([1, 642, 3])
"""

from .dibr import (DIBRLossWeights, DIBROutput, DIBRPredictor, DIBRRender, dibr_losses, flatten_loss,
                   render_views, silhouette_iou_loss, uniform_laplacian_loss)
from .encoders import EncoderOutput, ImageEncoder, sample_pyramid
from .implicit import (ImplicitCode, ImplicitLossWeights, ImplicitOutput, ImplicitPredictor, SpatialTransformer,
                       chamfer_loss, extract_mesh, implicit_losses, sdf_grid)

__all__ = ["ImageEncoder", "EncoderOutput", "sample_pyramid",
           "DIBRPredictor", "DIBROutput", "DIBRRender", "DIBRLossWeights", "dibr_losses", "render_views",
           "silhouette_iou_loss", "uniform_laplacian_loss", "flatten_loss",
           "ImplicitPredictor", "ImplicitCode", "ImplicitOutput", "ImplicitLossWeights", "SpatialTransformer",
           "implicit_losses", "chamfer_loss", "sdf_grid", "extract_mesh"]
