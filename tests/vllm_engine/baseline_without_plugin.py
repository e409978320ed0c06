"""Greedy outputs of UNCONSTRAINED on an engine without guide's processor, printed as JSON.

The engine core runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0) so that the loader of
entry-point logits processors can be replaced by one that loads nothing; the printed
`plugins_skipped` lists what the real loader would have loaded, proving guide was left out.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"

from vllm_env import ENGINE_KWARGS, UNCONSTRAINED, model_dir

if __name__ == "__main__":
    import vllm.v1.sample.logits_processor as lp
    from vllm import LLM, SamplingParams

    skipped: list[str] = []
    real_loader = lp._load_logitsprocs_plugins

    def no_plugins():
        skipped.extend(f"{c.__module__}:{c.__qualname__}" for c in real_loader())
        return []

    lp._load_logitsprocs_plugins = no_plugins
    llm = LLM(model=str(model_dir()), **ENGINE_KWARGS)
    params = [SamplingParams(max_tokens=n, temperature=0.0) for _, n in UNCONSTRAINED]
    outs = llm.generate([p for p, _ in UNCONSTRAINED], params, use_tqdm=False)
    result = {
        "plugins_skipped": sorted(set(skipped)),
        "token_ids": [list(o.outputs[0].token_ids) for o in outs],
        "texts": [o.outputs[0].text for o in outs],
    }
    print("BASELINE " + json.dumps(result), flush=True)
