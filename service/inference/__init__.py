"""The request path: validation, routing, batching, engines and the transport-agnostic data plane."""
