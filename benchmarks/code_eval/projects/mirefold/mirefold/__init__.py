"""A toy bank: accounts, transfers and a statement printer (evaluation project for monitors)."""
