"""The package imports fast and keeps heavy or optional dependencies out until they are used."""

from __future__ import annotations

import json
import subprocess
import sys

import guide

HEAVY = ["torch", "transformers", "jedi", "triton", "vllm", "typer", "lark"]


def _fresh_import() -> dict:
    code = (
        "import json, sys, time; t = time.perf_counter(); import guide; dt = time.perf_counter() - t; "
        f"print(json.dumps({{'seconds': dt, 'loaded': [m for m in {HEAVY!r} if m in sys.modules]}}))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_import_is_light_and_fast():
    best = min((_fresh_import() for _ in range(3)), key=lambda r: r["seconds"])
    assert best["loaded"] == []
    assert best["seconds"] < 0.5, best


def test_public_api_is_pinned():
    assert sorted(guide.__all__) == sorted(
        [
            "ASAp", "Compiled", "Constraint", "GCD", "SamplerConfigError", "ConstraintViolation", "EmptyLanguageError", "GrammarError",
            "GuideDeadEnd", "GuideError", "GuideLogitsProcessor", "IncompleteGenerationError", "Matcher",
            "MissingDependencyError", "ModelLoadError", "TokenizerError", "UnsupportedFeatureError",
            "Vocabulary", "__version__", "allocate_bitmask", "apply_bitmask", "choice", "constrain",
            "generate", "grammar", "json_schema", "json_value", "load_default_model", "load_model", "reasoning_then", "regex", "ToolCallError", "tools",
        ]
    )
    for name in guide.__all__:
        assert getattr(guide, name) is not None


def test_every_error_derives_from_the_root():
    for name in guide.__all__:
        obj = getattr(guide, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, guide.GuideError), name
