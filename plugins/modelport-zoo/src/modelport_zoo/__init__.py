"""modelport's model zoo: small, documented architectures and the digits demo (torch imported lazily)."""

from modelport_zoo.entrypoints import cnn, mlp

__all__ = ("cnn", "mlp")
