"""A tiny project for the monitor tests: names no model would guess."""
