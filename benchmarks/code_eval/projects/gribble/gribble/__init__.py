"""A toy text pipeline: tokenisers, filters and a sink (evaluation project for monitors)."""
