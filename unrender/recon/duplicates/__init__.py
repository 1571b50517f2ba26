"""Structure from Duplicates: one photo of N identical objects -> instance poses (and, later, shape, material, light).

Stages so far: :mod:`.inputs` (photo, instance masks, intrinsics), :mod:`.matching` (SIFT with in-plane
rotation search + RANSAC essential matrices between instance crops), :mod:`.tracks`, :mod:`.sfm`
(incremental view graph + PnP + bundle adjustment), :mod:`.poses` (the pipeline and its output frame)
and :mod:`.evaluate` (pose errors after removing the similarity gauge).
"""

from .evaluate import PoseErrors, pose_errors
from .inputs import DuplicatesInput, Intrinsics, read_duplicates_input
from .poses import DuplicatePoses, PoseConfig, estimate_poses

__all__ = ["DuplicatePoses", "DuplicatesInput", "Intrinsics", "PoseConfig", "PoseErrors", "estimate_poses",
           "pose_errors", "read_duplicates_input"]
