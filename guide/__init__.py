"""guide: structured and guided decoding for Hugging Face models.

    >>> import guide
    >>> model, tok = guide.load_default_model()                 # embedded, offline
    >>> guide.generate(model, tok, "Date of the moon landing?", guide.regex(r"\\d{4}-\\d{2}-\\d{2}"))

Importing guide is light: torch, transformers and optional extras load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_attributes

from .constraint import Compiled, Constraint, Matcher
from .errors import (
    ConstraintViolation,
    EmptyLanguageError,
    GrammarError,
    GuideDeadEnd,
    GuideError,
    MissingDependencyError,
    ModelLoadError,
    SamplerConfigError,
    TokenizerError,
    ToolCallError,
    UnsupportedFeatureError,
)
from .generate import IncompleteGenerationError, generate  # eager: the submodule shares the name
from .grammars.regex import choice, regex
from .vocab import Vocabulary

if TYPE_CHECKING:
    from .bitmask import allocate_bitmask, apply_bitmask
    from .grammars.cfg import grammar
    from .grammars.json_schema import json_schema, json_value
    from .models import load_default_model, load_model
    from .samplers.asap import GCD, ASAp
    from .processor import GuideLogitsProcessor, constrain
    from .reasoning import reasoning_then
    from .tool_calls import tools

__version__ = "0.1.0"

_LAZY = {
    "allocate_bitmask": "bitmask",
    "apply_bitmask": "bitmask",
    "constrain": "processor",
    "GuideLogitsProcessor": "processor",
    "load_default_model": "models",
    "load_model": "models",
    "grammar": "grammars.cfg",
    "json_schema": "grammars.json_schema",
    "json_value": "grammars.json_schema",
    "ASAp": "samplers.asap",
    "GCD": "samplers.asap",
    "reasoning_then": "reasoning",
    "tools": "tool_calls",
}


__getattr__ = lazy_attributes(__name__, _LAZY, globals())


__all__ = [
    "ASAp",
    "Compiled",
    "Constraint",
    "ConstraintViolation",
    "EmptyLanguageError",
    "GCD",
    "GrammarError",
    "GuideDeadEnd",
    "GuideError",
    "GuideLogitsProcessor",
    "IncompleteGenerationError",
    "Matcher",
    "MissingDependencyError",
    "ModelLoadError",
    "SamplerConfigError",
    "TokenizerError",
    "ToolCallError",
    "UnsupportedFeatureError",
    "Vocabulary",
    "__version__",
    "allocate_bitmask",
    "apply_bitmask",
    "choice",
    "constrain",
    "generate",
    "grammar",
    "json_schema",
    "json_value",
    "load_default_model",
    "load_model",
    "reasoning_then",
    "regex",
    "tools",
]
