"""Shared test helpers: boring datasets, datamodules and models, and a RunIf skip marker."""
