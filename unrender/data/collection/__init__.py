"""Object collections for single-view reconstruction: DVR's ShapeNet layout and a procedural generator.

* :mod:`.dvr_layout` -- the layout (documented field by field), :func:`read_collection_index`,
  :func:`read_dvr_object`, :func:`write_dvr_object`;
* :mod:`.dvr_cameras` -- ``world_mat`` / ``camera_mat`` <-> :class:`unrender.cameras.Camera`;
* :mod:`.categories`, :mod:`.part_sdf` -- parametric chair/table/airplane/lamp/car/sofa part assemblies,
  meshed watertight as the union of analytic primitive SDFs;
* :mod:`.synthesize` -- :func:`synthesize_collection` (``unrender synth --kind collection``).

Example:
    >>> out = synthesize_collection("/tmp/coll", categories=3, objects=4, force=True)   # doctest: +SKIP
    >>> index = read_collection_index(out)                                              # doctest: +SKIP
"""

from .categories import CATEGORIES, Category, build_parts, category_by_name
from .dvr_cameras import camera_to_dvr, dvr_project, dvr_to_camera
from .dvr_layout import (CollectionIndex, DVRObject, read_collection_index, read_dvr_object, read_metadata,
                         read_occupancy_points, write_collection_lists, write_dvr_object)
from .part_sdf import Box, Cylinder, Ellipsoid, Frustum, Part, mesh_parts, union_sdf
from .synthesize import synthesize_collection

__all__ = ["CATEGORIES", "Category", "build_parts", "category_by_name", "camera_to_dvr", "dvr_project",
           "dvr_to_camera", "CollectionIndex", "DVRObject", "read_collection_index", "read_dvr_object",
           "read_metadata", "read_occupancy_points", "write_collection_lists", "write_dvr_object", "Box", "Cylinder",
           "Ellipsoid", "Frustum", "Part", "mesh_parts", "union_sdf", "synthesize_collection"]
