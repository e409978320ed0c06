"""A toy warehouse: crates on shelves, counted by a ledger (evaluation project for monitors)."""
