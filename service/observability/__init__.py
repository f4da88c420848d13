"""Logging, Prometheus metrics and per-version A/B statistics."""
