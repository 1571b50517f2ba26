"""Evaluation metrics: geometry (Chamfer, F-score, normal consistency, volume IoU) and images (PSNR, SSIM, mask IoU)."""

from .geometry import (MeshMetrics, NearestNeighbours, chamfer_distance, evaluate_meshes, f_score, is_watertight,
                       nearest_neighbours, normal_consistency, precision_recall, sample_surface, volume_iou)
from .image import composite, mask_iou, psnr, ssim

__all__ = ["MeshMetrics", "NearestNeighbours", "chamfer_distance", "evaluate_meshes", "f_score", "is_watertight",
           "nearest_neighbours", "normal_consistency", "precision_recall", "sample_surface", "volume_iou",
           "composite", "mask_iou", "psnr", "ssim"]
