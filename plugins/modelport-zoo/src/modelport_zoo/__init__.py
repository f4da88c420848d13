"""modelport's model zoo: small, documented architectures (``mlp``, ``cnn``) and the digits demo.

Importing this package does not import torch; :mod:`modelport_zoo.architectures` and
:mod:`modelport_zoo.demo` do.
"""

from modelport_zoo.entrypoints import cnn, mlp

__all__ = ("cnn", "mlp")
