"""Fake engines and backends for the core test suite."""
