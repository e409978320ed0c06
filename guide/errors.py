"""The exception hierarchy: one root, precise subclasses that also derive from the builtin they refine."""

from __future__ import annotations


class GuideError(Exception):
    """Root of every error guide raises on purpose."""


class GrammarError(GuideError, ValueError):
    """A constraint spec (regex, grammar, schema) is malformed."""


class UnsupportedFeatureError(GrammarError):
    """A spec uses a construct guide does not implement; never silently ignored."""

    def __init__(self, message: str, *, feature: str, where: str | None = None) -> None:
        super().__init__(message)
        self.feature = feature
        self.where = where


class EmptyLanguageError(GrammarError):
    """No token sequence of the vocabulary can satisfy the constraint."""


class TokenizerError(GuideError, ValueError):
    """The tokenizer cannot be turned into a byte-exact vocabulary, or disagrees with the model."""


class GuideDeadEnd(GuideError, RuntimeError):
    """Decoding reached a prefix from which the constraint allows no token."""

    def __init__(self, message: str, *, row: int | None = None, prefix: bytes = b"") -> None:
        super().__init__(message)
        self.row = row
        self.prefix = prefix


class ConstraintViolation(GuideError, RuntimeError):
    """A token the constraint had forbidden was fed to a matcher."""


class SamplerConfigError(GuideError, ValueError):
    """A sampler argument is invalid or would void the sampler's distributional guarantee."""


class ModelLoadError(GuideError, OSError):
    """A model could not be found or loaded locally (guide never downloads)."""


class MissingDependencyError(GuideError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class ToolCallError(GuideError, ValueError):
    """Text that should hold tool calls does not (unconstrained output, or a call the tools reject)."""


__all__ = [
    "ConstraintViolation",
    "EmptyLanguageError",
    "GrammarError",
    "GuideDeadEnd",
    "GuideError",
    "MissingDependencyError",
    "ModelLoadError",
    "SamplerConfigError",
    "TokenizerError",
    "ToolCallError",
    "UnsupportedFeatureError",
]
