"""unrender: images back into 3D (shape, materials and lighting) in plain PyTorch, on CPU and GPU.

Layers (data flows down, imports only go up the list): ``cameras``/``mesh``/``io`` (plain data),
``render`` (differentiable ops, shading, lights), ``geometry`` (shape representations),
``data`` (datasets and synthesis), ``recon`` (pipelines), ``cli``.
"""

from .cameras import Camera, look_at, orbit_poses
from .errors import DataError, InputError, UnrenderError
from .mesh import Mesh, PBRMaterial

__version__ = "0.1.0"
__all__ = ["Camera", "look_at", "orbit_poses", "Mesh", "PBRMaterial", "UnrenderError", "InputError", "DataError"]
