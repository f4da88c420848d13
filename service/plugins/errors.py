"""Errors raised while discovering or validating plugins."""

from __future__ import annotations

__all__ = ("PluginError", "PluginLoadError", "PluginValidationError", "UnknownPlugin")


class PluginError(Exception):
    """Base for plugin problems; the message names the entry point and its distribution."""


class PluginLoadError(PluginError):
    """Importing an entry point failed."""


class PluginValidationError(PluginError):
    """An entry point loaded but does not satisfy the contract."""


class UnknownPlugin(PluginError):
    """No plugin of that kind and name is installed (or it failed to load)."""
