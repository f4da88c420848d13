"""Entry-point discovery of backends, architectures and demos.

Each ``ep.load()`` is isolated: a plugin that fails to import or violates the contract is recorded
with its error and distribution, and everything else keeps working (pluggy keeps provenance but lets
one broken plugin take the process down; we do not).
"""

from __future__ import annotations

import importlib
import inspect
import threading
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

import structlog

from service.plugins.contract import ArchitectureFactory, Backend
from service.plugins.demos import Demo
from service.plugins.errors import PluginLoadError, PluginValidationError, UnknownPlugin
from service.plugins.inspection import ArtifactInspector

__all__ = (
    "ARCHITECTURES_GROUP",
    "BACKENDS_GROUP",
    "DEMOS_GROUP",
    "PluginInfo",
    "PluginRegistry",
    "default_registry",
)

BACKENDS_GROUP = "modelport.backends"
ARCHITECTURES_GROUP = "modelport.architectures"
DEMOS_GROUP = "modelport.demos"

PluginKind = Literal["backend", "architecture", "demo"]
_GROUPS: dict[PluginKind, str] = {
    "backend": BACKENDS_GROUP,
    "architecture": ARCHITECTURES_GROUP,
    "demo": DEMOS_GROUP,
}

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """One discovered entry point and what became of it."""

    kind: PluginKind
    name: str
    value: str
    distribution: str
    version: str
    error: str | None = None
    description: str = ""

    @property
    def ok(self) -> bool:
        """Whether the plugin loaded and passed validation."""
        return self.error is None


def _provenance(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown", "unknown"
    return dist.metadata["Name"] or "unknown", dist.version or "unknown"


def _as_backend(obj: Any, label: str) -> Backend:
    """Accept a Backend subclass, a Backend instance, or a zero-arg factory returning one."""
    if inspect.isclass(obj):
        if not issubclass(obj, Backend):
            raise PluginValidationError(f"{label}: {obj!r} is not a subclass of service.plugins.Backend")
        if inspect.isabstract(obj):
            raise PluginValidationError(f"{label}: {obj.__name__} leaves abstract methods unimplemented")
        instance = obj()
    elif isinstance(obj, Backend):
        instance = obj
    elif callable(obj):
        instance = obj()
        if not isinstance(instance, Backend):
            raise PluginValidationError(f"{label}: factory returned {type(instance).__name__}, not a Backend")
    else:
        raise PluginValidationError(f"{label}: {obj!r} is neither a Backend class nor a factory")
    if not instance.formats:
        raise PluginValidationError(f"{label}: Backend.formats is empty; declare the artifact formats it loads")
    if not all(isinstance(fmt, str) and fmt for fmt in instance.formats):
        raise PluginValidationError(f"{label}: Backend.formats must be non-empty strings, got {instance.formats!r}")
    if instance.inspector is not None and not isinstance(instance.inspector, ArtifactInspector):
        raise PluginValidationError(
            f"{label}: Backend.inspector is a {type(instance.inspector).__name__}, not an ArtifactInspector"
        )
    return instance


def _as_architecture(obj: Any, label: str) -> ArchitectureFactory:
    if not callable(obj):
        raise PluginValidationError(f"{label}: {obj!r} is not callable as (**config) -> torch.nn.Module")
    return obj


def _as_demo(obj: Any, label: str) -> Demo:
    if not callable(obj):
        raise PluginValidationError(f"{label}: {obj!r} is not callable as async (services, *, skip_if_present)")
    return obj


class PluginRegistry:
    """The backends, architectures and demos available in this process.

    Discovery runs lazily on first use and again on :meth:`refresh`; ``blocked`` names are never loaded.
    """

    def __init__(self, *, blocked: frozenset[str] = frozenset(), autoload: bool = True) -> None:
        self._blocked = blocked
        self._autoload = autoload
        self._lock = threading.Lock()
        self._loaded = False
        self._backends: dict[str, Backend] = {}
        self._architectures: dict[str, ArchitectureFactory] = {}
        self._demos: dict[str, Demo] = {}
        self._infos: list[PluginInfo] = []

    def refresh(self) -> None:
        """Re-scan entry points (e.g. after installing a plugin distribution)."""
        importlib.invalidate_caches()  # a distribution installed after start-up must be found on refresh
        with self._lock:
            self._backends.clear()
            self._architectures.clear()
            self._demos.clear()
            self._infos.clear()
            self._loaded = True
            if self._autoload:
                for kind, group in _GROUPS.items():
                    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
                        self._register_entry_point(kind, ep)

    def _register_entry_point(self, kind: PluginKind, ep: EntryPoint) -> None:
        dist, version = _provenance(ep)
        label = f"{kind} '{ep.name}' ({ep.value}) from {dist} {version}"
        description, error = "", None
        try:
            if ep.name in self._blocked:
                raise PluginValidationError(f"{label}: blocked by configuration")
            registries: dict[PluginKind, dict[str, Any]] = {
                "backend": self._backends,
                "architecture": self._architectures,
                "demo": self._demos,
            }
            registry = registries[kind]
            if ep.name in registry:
                raise PluginValidationError(f"{label}: duplicate name; an earlier distribution already provides it")
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - isolate every plugin failure
                raise PluginLoadError(f"{label}: import failed: {type(exc).__name__}: {exc}") from exc
            if kind == "backend":
                backend = _as_backend(obj, label)
                self._backends[ep.name] = backend
                description = backend.description
            else:
                validate = _as_architecture if kind == "architecture" else _as_demo
                registry[ep.name] = validate(obj, label)
                description = (inspect.getdoc(obj) or "").split("\n", 1)[0]
        except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, never fatal
            error = str(exc)
            _log.warning("plugin_unavailable", kind=kind, name=ep.name, distribution=dist, error=error)
        self._infos.append(PluginInfo(kind, ep.name, ep.value, dist, version, error, description))

    def add_backend(self, name: str, backend: Backend) -> None:
        """Register a backend programmatically (tests, embedding); same validation as entry points."""
        self._ensure_loaded()
        with self._lock:
            self._backends[name] = _as_backend(backend, f"backend '{name}'")
            self._infos.append(PluginInfo("backend", name, repr(backend), "<in-process>", "", None))

    def add_architecture(self, name: str, factory: ArchitectureFactory) -> None:
        """Register an architecture programmatically (tests, embedding)."""
        self._ensure_loaded()
        with self._lock:
            self._architectures[name] = _as_architecture(factory, f"architecture '{name}'")
            self._infos.append(PluginInfo("architecture", name, repr(factory), "<in-process>", "", None))

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.refresh()

    def infos(self) -> list[PluginInfo]:
        """Every discovered plugin, broken ones included, sorted by kind and name."""
        self._ensure_loaded()
        return sorted(self._infos, key=lambda i: (i.kind, i.name))

    def backend(self, name: str) -> Backend:
        """The backend called ``name``; :class:`UnknownPlugin` names the alternatives."""
        self._ensure_loaded()
        try:
            return self._backends[name]
        except KeyError:
            raise UnknownPlugin(self._unknown_message("backend", name, self._backends)) from None

    def architecture(self, name: str) -> ArchitectureFactory:
        """The architecture factory called ``name``."""
        self._ensure_loaded()
        try:
            return self._architectures[name]
        except KeyError:
            raise UnknownPlugin(self._unknown_message("architecture", name, self._architectures)) from None

    def demos(self) -> dict[str, Demo]:
        """The usable demos by name (``modelport demo``, ``serve --demo``)."""
        self._ensure_loaded()
        return dict(sorted(self._demos.items()))

    def backend_names(self) -> list[str]:
        """Names of the usable backends."""
        self._ensure_loaded()
        return sorted(self._backends)

    def architecture_names(self) -> list[str]:
        """Names of the usable architectures."""
        self._ensure_loaded()
        return sorted(self._architectures)

    def _unknown_message(self, kind: str, name: str, known: dict[str, Any]) -> str:
        broken = [i for i in self._infos if i.kind == kind and i.name == name and i.error]
        if broken:
            return f"{kind} '{name}' is installed but unusable: {broken[0].error}"
        available = ", ".join(sorted(known)) or "none installed"
        return f"unknown {kind} '{name}' (available: {available})"


_default: PluginRegistry | None = None


def default_registry() -> PluginRegistry:
    """The process-wide registry, discovered on first use."""
    global _default
    if _default is None:
        _default = PluginRegistry()
    return _default
