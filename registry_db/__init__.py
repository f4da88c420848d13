"""modelport's registry: SQL models, the repository and the content-addressed artifact store."""
