"""Samplers that own their decoding loop: `asap` (grammar-aligned sampling, ASAp, and plain
grammar-constrained sampling, GCD), `contrastive` (CD, USCD with `lame` prompts, speculative SCD),
`switching` (entropy-adaptive small/large model switching, EAD) and `mbr` (minimum Bayes risk
reranking).

Light on import: the submodules (which use numpy and, on first sample, torch) load on first use.

    >>> from guide.samplers import ASAp
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
    from .asap import GCD, ASAp, EFGTrie, Enumeration, Sample, SampleDiagnostics, SamplerConfigError, kl_divergence
    from .contrastive import (
        TwoModelOutput,
        cd_scores,
        contrastive_decode,
        contrastive_generate,
        scd_decode,
        uscd_decode,
        uscd_generate,
    )
    from .lame import lame_prompt
    from .mbr import MBR, MBRResult, mbr_generate
    from .models import truncated_amateur
    from .switching import SwitchingOutput, SwitchPolicy, ead_decode, ead_generate
    from .utilities import Utility, make_utility

_LAZY = {
    "ASAp": "asap",
    "GCD": "asap",
    "EFGTrie": "asap",
    "Enumeration": "asap",
    "Sample": "asap",
    "SampleDiagnostics": "asap",
    "SamplerConfigError": "asap",
    "kl_divergence": "asap",
    "cd_scores": "contrastive",
    "contrastive_decode": "contrastive",
    "contrastive_generate": "contrastive",
    "scd_decode": "contrastive",
    "uscd_decode": "contrastive",
    "uscd_generate": "contrastive",
    "lame_prompt": "lame",
    "TwoModelOutput": "contrastive",
    "ead_decode": "switching",
    "ead_generate": "switching",
    "SwitchPolicy": "switching",
    "SwitchingOutput": "switching",
    "truncated_amateur": "models",
    "MBR": "mbr",
    "MBRResult": "mbr",
    "mbr_generate": "mbr",
    "Utility": "utilities",
    "make_utility": "utilities",
}


__getattr__ = lazy_attributes(__name__, _LAZY, globals())


__all__ = sorted(_LAZY)
