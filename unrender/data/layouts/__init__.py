"""Multi-view dataset layouts: readers into one :class:`MultiViewDataset`, and writers for every layout.

==================== ======================================= ==============================================
layout               files                                   module
==================== ======================================= ==============================================
Blender / NeRF-syn.  ``transforms_{train,val,test}.json``    :mod:`~unrender.data.layouts.blender`
instant-ngp          ``transforms*.json`` with ``fl_x ...``  :mod:`~unrender.data.layouts.blender`
COLMAP               ``sparse/0/*.{bin,txt}`` + ``images/``  :mod:`~unrender.data.layouts.colmap`
LLFF                 ``poses_bounds.npy`` + ``images/``      :mod:`~unrender.data.layouts.llff`
IDR / DTU / NeuS     ``cameras.npz`` + ``image/`` + ``mask/``:mod:`~unrender.data.layouts.idr`
JSON folder          ``X.png`` + ``X.json`` per image        :mod:`~unrender.data.layouts.json_folder`
==================== ======================================= ==============================================

Every reader returns OpenGL camera-to-world cameras in the dataset's own world frame, sRGB colour and
alpha masks (:mod:`~unrender.data.layouts.dataset`); :func:`write_layout` writes any of them.

Example:
    >>> ds = read_dataset("scene", split="train")   # doctest: +SKIP
    >>> rgb, mask = ds.frames(0)                     # doctest: +SKIP
"""

from .blender import read_blender, write_blender, write_nerf_synthetic
from .colmap import read_colmap, read_colmap_model, write_colmap
from .convert import LAYOUTS, write_layout
from .dataset import MultiViewDataset, detect_layout, read_dataset
from .idr import decompose_projection, read_idr, write_idr
from .json_folder import read_json_folder, write_json_folder
from .llff import read_llff, write_llff

__all__ = ["MultiViewDataset", "read_dataset", "detect_layout", "write_layout", "LAYOUTS",
           "read_blender", "write_blender", "write_nerf_synthetic", "read_colmap", "read_colmap_model",
           "write_colmap", "read_llff", "write_llff", "read_idr", "write_idr", "decompose_projection",
           "read_json_folder", "write_json_folder"]
