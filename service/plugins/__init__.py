"""The plugin contract (``service.plugins``): backends, inspectors, engines, architectures, demos, discovery."""

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
from service.plugins.demos import Demo, DemoReport
from service.plugins.discovery import (
    ARCHITECTURES_GROUP,
    BACKENDS_GROUP,
    DEMOS_GROUP,
    PluginInfo,
    PluginRegistry,
    default_registry,
)
from service.plugins.errors import PluginError, PluginLoadError, PluginValidationError, UnknownPlugin
from service.plugins.inspection import DEFAULT_LIMITS, ArtifactFile, ArtifactInspector, ArtifactLimits

__all__ = (
    "ARCHITECTURES_GROUP",
    "BACKENDS_GROUP",
    "DEFAULT_LIMITS",
    "DEMOS_GROUP",
    "V2_TO_NUMPY",
    "ArchitectureFactory",
    "ArtifactFile",
    "ArtifactFormat",
    "ArtifactInspector",
    "ArtifactLimits",
    "Backend",
    "Demo",
    "DemoReport",
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
