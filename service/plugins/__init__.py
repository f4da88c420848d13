"""The plugin contract (``service.plugins``): backends, engines, architectures and their discovery."""

from service.plugins.contract import (
    V2_TO_NUMPY,
    ArchitectureFactory,
    ArtifactFormat,
    Backend,
    Engine,
    LoadRequest,
    TensorSpec,
    numpy_dtype,
    v2_datatype,
)
from service.plugins.discovery import (
    ARCHITECTURES_GROUP,
    BACKENDS_GROUP,
    PluginInfo,
    PluginRegistry,
    default_registry,
)
from service.plugins.errors import PluginError, PluginLoadError, PluginValidationError, UnknownPlugin

__all__ = (
    "ARCHITECTURES_GROUP",
    "BACKENDS_GROUP",
    "V2_TO_NUMPY",
    "ArchitectureFactory",
    "ArtifactFormat",
    "Backend",
    "Engine",
    "LoadRequest",
    "PluginError",
    "PluginInfo",
    "PluginLoadError",
    "PluginRegistry",
    "PluginValidationError",
    "TensorSpec",
    "UnknownPlugin",
    "default_registry",
    "numpy_dtype",
    "v2_datatype",
)
