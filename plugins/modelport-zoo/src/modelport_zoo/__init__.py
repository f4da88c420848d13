"""modelport's model zoo: small, documented architectures and the digits demo."""

from modelport_zoo.architectures import cnn, mlp

__all__ = ("cnn", "mlp")
