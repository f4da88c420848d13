"""Errors raised while discovering, validating or choosing plugins (part of the one hierarchy)."""

from __future__ import annotations

from service.errors import ModelportError

__all__ = ("PluginError", "PluginLoadError", "PluginValidationError", "UnknownPlugin")


class PluginError(ModelportError):
    """Base for plugin problems; the message names the entry point and its distribution. An installation
    fault, not the caller's."""

    status = 500


class PluginLoadError(PluginError):
    """Importing an entry point failed."""

    status = 500


class PluginValidationError(PluginError):
    """An entry point loaded but does not satisfy the contract."""

    status = 500


class UnknownPlugin(PluginError):
    """No plugin of that kind and name is installed (or it failed to load): the caller named one we lack."""

    status = 400
