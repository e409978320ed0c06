"""Serving-engine plugins. Each submodule imports its engine, so import them only from that engine."""
