"""Multi-view reconstruction: posed images + masks -> textured PBR mesh + environment light (nvdiffrec's job).

Entry point: :func:`reconstruct`; configuration: :class:`MultiViewConfig`, :func:`preset`.
"""

from .config import MultiViewConfig, apply_overrides, preset
from .pipeline import reconstruct

__all__ = ["MultiViewConfig", "apply_overrides", "preset", "reconstruct"]
