"""Litestar controllers: thin adapters that call the data plane or the management services."""
