"""Probe: can a better-trained amateur make SCD faster than CD on the embedded pair?

Trains a 576x576 early-exit adapter (identity init) in front of the final norm of the k-layer
truncated amateur, on the expert's own next-token distributions over docs/*.md (KL, Adam, a few
minutes on one CPU core), then compares greedy CD and greedy SCD (gamma 1-3) with the plain and
the adapted amateur on the bench_two_models prompts. Not part of `run.py` (about 10 minutes);
the figures it printed are in docs/two_models.md.

    python benchmarks/bench_scd_adapter.py [k] [steps] [training tokens]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPTS = [
    "Write a short story about a robot who learns to paint.",
    "Explain why the sky is blue in two sentences.",
    "List three uses of a paperclip.",
]


def adapter_for(model, tok, k: int, steps: int, n_tokens: int):
    """The trained adapter (a torch Linear) for the first `k` layers of `model`."""
    import torch

    ids: list[int] = []
    for path in sorted((ROOT / "docs").glob("*.md")):
        ids += tok.encode(path.read_text(encoding="utf-8"), add_special_tokens=False)
    chunks = torch.tensor(ids[: n_tokens // 256 * 256]).view(-1, 256)
    hidden, target = [], []
    with torch.no_grad():
        for chunk in chunks:
            out = model(chunk[None], output_hidden_states=True)
            target.append(torch.log_softmax(out.logits[0, :, :49152].float(), -1))
            hidden.append(out.hidden_states[k][0])
    h, logp = torch.cat(hidden), torch.cat(target)
    adapter = torch.nn.Linear(576, 576)
    torch.nn.init.eye_(adapter.weight)
    torch.nn.init.zeros_(adapter.bias)
    opt = torch.optim.Adam(adapter.parameters(), lr=1e-3)
    norm, head = model.model.norm, model.lm_head
    for p in list(norm.parameters()) + list(head.parameters()):
        p.requires_grad_(False)
    for _ in range(steps):
        batch = torch.randint(len(h), (256,))
        z = head(norm(adapter(h[batch])))[:, :49152]
        loss = torch.nn.functional.kl_div(torch.log_softmax(z, -1), logp[batch], log_target=True, reduction="batchmean")
        opt.zero_grad()
        loss.backward()
        opt.step()
    return adapter.requires_grad_(False)


def main() -> None:
    import torch

    import guide
    from guide.generate import eos_ids_of
    from guide.samplers.contrastive import _encode, contrastive_decode, scd_decode
    from guide.samplers.models import truncated_amateur

    k, steps, n_tokens = (int(x) for x in (sys.argv[1:] + ["4", "150", "4096"][len(sys.argv[1:]):]))
    torch.set_num_threads(1)
    model, tok = guide.load_default_model()
    eos = eos_ids_of(model, tok)
    started = time.perf_counter()
    adapted = truncated_amateur(model, k)
    adapted.model.norm = torch.nn.Sequential(adapter_for(model, tok, k, steps, n_tokens), model.model.norm)
    print(f"adapter trained in {time.perf_counter() - started:.0f} s")
    prompts = _encode(tok, PROMPTS, None)
    for name, amateur in (("plain", truncated_amateur(model, k)), ("adapted", adapted)):
        cd_tokens, cd_secs = [], 0.0
        for p in prompts:
            out = contrastive_decode(model, amateur, [p], eos_ids=eos, max_new_tokens=40)
            cd_tokens.append(out.token_ids[0])
            cd_secs += out.seconds
        cd_rate = sum(map(len, cd_tokens)) / cd_secs
        print(f"{name}: CD {cd_rate:.2f} tokens/s")
        for gamma in (1, 2, 3):
            toks, secs, drafted, accepted = [], 0.0, 0, 0
            for p in prompts:
                out = scd_decode(model, amateur, p, gamma=gamma, eos_ids=eos, max_new_tokens=40)
                toks.append(out.token_ids[0])
                secs += out.seconds
                drafted += out.drafted
                accepted += out.accepted
            rate = sum(map(len, toks)) / secs
            print(
                f"{name}: SCD gamma {gamma}: same tokens as CD {toks == cd_tokens}, {rate / cd_rate:.2f}x CD, "
                f"acceptance {accepted / max(drafted, 1):.3f}"
            )


if __name__ == "__main__":
    main()
