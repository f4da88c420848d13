"""Experiments: comparing model versions by the outcomes they produce."""
