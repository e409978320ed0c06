"""Samplers that own their decoding loop: `guide.samplers.asap` (grammar-aligned sampling, ASAp,
and plain grammar-constrained sampling, GCD, for comparison).

Light on import: the submodules (which use numpy and, on first sample, torch) load on first use.

    >>> from guide.samplers import ASAp
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .asap import GCD, ASAp, EFGTrie, Enumeration, Sample, SampleDiagnostics, SamplerConfigError, kl_divergence

_LAZY = {
    "ASAp": "asap",
    "GCD": "asap",
    "EFGTrie": "asap",
    "Enumeration": "asap",
    "Sample": "asap",
    "SampleDiagnostics": "asap",
    "SamplerConfigError": "asap",
    "kl_divergence": "asap",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'guide.samplers' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = sorted(_LAZY)
