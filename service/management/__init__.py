"""Application services shared by the HTTP admin API and the CLI."""
