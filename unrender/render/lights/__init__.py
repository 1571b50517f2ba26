"""Lights: every one implements ``irradiance(points, normals)`` and ``shade(...)`` (see :mod:`.base`)."""

from .base import Light
from .brdf_lut import brdf_lut, lookup_brdf_lut
from .environment import EnvironmentLight
from .punctual import DirectionalLight, PointLight
from .spherical_gaussians import SphericalGaussianLight
from .spherical_harmonics import SHIrradianceLight, project_sh9, sh9_basis

__all__ = ["Light", "DirectionalLight", "PointLight", "SHIrradianceLight", "SphericalGaussianLight",
           "EnvironmentLight", "brdf_lut", "lookup_brdf_lut", "project_sh9", "sh9_basis"]
