"""Two-model decoding on the embedded pair: CD, SCD and EAD against expert-only greedy.

    python benchmarks/bench_two_models.py [--quick]     # prints markdown; full run writes the plot

Pair: expert / large = the embedded SmolLM2-135M-Instruct (30 layers); amateur / small = the same
weights truncated to the first K layers plus the final norm and the LM head
(`guide.samplers.models.truncated_amateur`, built in memory, untrained: a stand-in for a real
smaller model of the family, and a weak one). CPU, `torch.set_num_threads(1)`, greedy unless
stated. Timings are wall-clock on a shared machine: compare rows of one run, not across runs.

Reports: tokens/s of expert-only greedy, CD, SCD (greedy and sampling) and EAD; SCD's acceptance
rate, expert calls per token and speed-up against CD (greedy SCD must equal greedy CD token for
token); a batch of prompts with padding for CD and EAD; EAD's large-model token fraction,
parameter-weighted cost and agreement with the large model's own greedy output against the
threshold (plot: docs/two_models_ead.png).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

K_LAYERS = 4
PROMPTS = [
    "Write a short story about a robot who learns to paint.",
    "Explain why the sky is blue in two sentences.",
    "List three uses of a paperclip.",
]
PLOT = ROOT / "docs" / "two_models_ead.png"


def _expert_greedy(model, ids, max_new, eos):
    import torch

    from guide.samplers.models import KVModel

    kv = KVModel(model)
    out, started = [], time.perf_counter()
    z = kv.feed(torch.tensor([ids]))[0, -1]
    for _ in range(max_new):
        t = int(z[:49152].argmax())
        if t in eos:
            break
        out.append(t)
        z = kv.feed(torch.tensor([[t]]))[0, -1]
    return out, time.perf_counter() - started


def _agreement(a, b):
    """Fraction of positions where two token lists agree (over the longer length)."""
    n = max(len(a), len(b))
    return sum(x == y for x, y in zip(a, b)) / n if n else 1.0


def _large_would_pick(model, prompt, tokens):
    """Fraction of `tokens` that the model's own argmax would have picked at the same prefix."""
    import torch

    if not tokens:
        return 1.0
    with torch.inference_mode():
        z = model(torch.tensor([prompt + tokens])).logits[0, len(prompt) - 1 : -1, :49152]
    return float((z.argmax(-1) == torch.tensor(tokens)).float().mean())


def _params(model):
    return sum(p.numel() for p in model.parameters())


def run(quick: bool = False, plot: Path | None = None) -> str:
    import torch

    import guide
    from guide.generate import eos_ids_of
    from guide.samplers.contrastive import _encode, contrastive_decode, scd_decode
    from guide.samplers.models import truncated_amateur
    from guide.samplers.switching import ead_decode

    torch.set_num_threads(1)
    model, tok = guide.load_default_model()
    small = truncated_amateur(model, K_LAYERS)
    eos = eos_ids_of(model, tok)
    prompts = PROMPTS[:1] if quick else PROMPTS
    max_new = 12 if quick else 40
    ids = _encode(tok, prompts, None)
    p_large, p_small = _params(model), _params(small)
    lines = [
        "## Two-model decoding (CD, SCD, EAD)",
        "",
        (
            f"Expert/large: embedded SmolLM2-135M-Instruct, 30 layers, {p_large / 1e6:.1f} M parameters. "
            f"Amateur/small: the same weights truncated to the first {K_LAYERS} layers + final norm + LM head "
            f"({p_small / 1e6:.1f} M parameters, shared; untrained truncation, so a weak predictor of the expert). "
            f"{len(prompts)} chat prompt(s), {max_new} new tokens max, greedy unless stated, CPU, 1 thread."
        ),
        "",
    ]

    # Expert-only greedy, the baseline.
    base_tokens, base_time = [], 0.0
    for p in ids:
        toks, secs = _expert_greedy(model, p, max_new, eos)
        base_tokens.append(toks)
        base_time += secs
    n_base = sum(map(len, base_tokens))
    rows = [("expert-only greedy", n_base, base_time, "", "")]

    cd_tokens, cd_time, cd_calls = [], 0.0, 0
    for p in ids:
        out = contrastive_decode(model, small, [p], eos_ids=eos, max_new_tokens=max_new)
        cd_tokens.append(out.token_ids[0])
        cd_time += out.seconds
        cd_calls += out.expert_calls
    n_cd = sum(map(len, cd_tokens))
    rows.append(
        ("CD greedy (alpha 0.1, lam 1)", n_cd, cd_time, f"{cd_calls / max(n_cd, 1):.2f}", "")
    )

    scd_rows = []
    for gamma in (1, 2, 4) if not quick else (2,):
        toks, secs, calls, drafted, accepted = [], 0.0, 0, 0, 0
        for p in ids:
            out = scd_decode(model, small, p, gamma=gamma, eos_ids=eos, max_new_tokens=max_new)
            toks.append(out.token_ids[0])
            secs += out.seconds
            calls += out.expert_calls
            drafted += out.drafted
            accepted += out.accepted
        n = sum(map(len, toks))
        same = toks == cd_tokens
        rows.append(
            (
                f"SCD greedy, gamma {gamma}",
                n,
                secs,
                f"{calls / max(n, 1):.2f}",
                f"{accepted / max(drafted, 1):.2f}",
            )
        )
        scd_rows.append(
            (gamma, same, cd_time / secs if secs else math.nan, accepted / max(drafted, 1))
        )

    for lam in (1.0, 0.1):
        secs = calls = drafted = accepted = n = 0
        cd_secs = 0.0
        for p in ids:
            out = scd_decode(
                model,
                small,
                p,
                gamma=2,
                eos_ids=eos,
                max_new_tokens=max_new,
                do_sample=True,
                seed=0,
                lam=lam,
            )
            ref = contrastive_decode(
                model,
                small,
                [p],
                eos_ids=eos,
                max_new_tokens=max_new,
                do_sample=True,
                seed=0,
                lam=lam,
            )
            n += len(out.token_ids[0])
            secs += out.seconds
            cd_secs += ref.seconds / max(len(ref.token_ids[0]), 1) * len(out.token_ids[0])
            calls += out.expert_calls
            drafted += out.drafted
            accepted += out.accepted
        rows.append(
            (
                f"SCD sampling, gamma 2, lam {lam}",
                n,
                secs,
                f"{calls / max(n, 1):.2f}",
                f"{accepted / max(drafted, 1):.2f}",
            )
        )
        rows.append(
            (f"CD sampling, lam {lam} (time scaled to SCD's token count)", n, cd_secs, "", "")
        )

    # Batches with padding (CD and EAD), same prompts in one call.
    if len(ids) > 1:
        out = contrastive_decode(
            model, small, ids, eos_ids=eos, max_new_tokens=max_new, pad_id=tok.pad_token_id or 0
        )
        assert out.token_ids == cd_tokens, "batched CD must equal CD one prompt at a time"
        rows.append(
            (
                f"CD greedy, batch of {len(ids)} (padded)",
                sum(map(len, out.token_ids)),
                out.seconds,
                "",
                "",
            )
        )

    lines += [
        "| method | new tokens | seconds | tokens/s | expert calls / token | SCD acceptance |",
        "|---|---|---|---|---|---|",
    ]
    for name, n, secs, calls, acc in rows:
        lines.append(
            f"| {name} | {n} | {secs:.2f} | {n / secs if secs else math.nan:.2f} | {calls} | {acc} |"
        )
    lines.append("")
    for gamma, same, speed, acc in scd_rows:
        lines.append(
            f"- SCD greedy gamma {gamma}: token-identical to greedy CD: **{same}**; "
            f"speed-up vs CD {speed:.2f}x at acceptance {acc:.2f}."
        )
    lines.append("")

    # EAD sweep.
    # The truncated small model is confident (its median entropy is about 2 bits, on junk tokens),
    # so the interesting thresholds are low.
    thresholds = (
        [0.0, 1.0, 2.0, 3.0, math.inf]
        if quick
        else [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, math.inf]
    )
    sweep = []
    for tau in thresholds:
        timing = "current" if tau == 0.0 else "next"
        toks, secs, fl_num, fl_den = [], 0.0, 0, 0
        for p in ids:
            out = ead_decode(
                small,
                model,
                [p],
                threshold=tau,
                switch_timing=timing,
                eos_ids=eos,
                max_new_tokens=max_new,
            )
            toks.append(out.token_ids[0])
            secs += out.seconds
            fl_num += sum(s == "L" for s in out.sources[0])
            fl_den += len(out.sources[0])
        f = fl_num / max(fl_den, 1)
        agree = sum(_agreement(a, b) for a, b in zip(toks, base_tokens)) / len(ids)
        local = sum(_large_would_pick(model, p, t) for p, t in zip(ids, toks)) / len(ids)
        cost = f + (1 - f) * p_small / p_large
        sweep.append((tau, timing, f, cost, agree, local, fl_den / secs if secs else math.nan))
    if len(ids) > 1:
        out = ead_decode(
            small,
            model,
            ids,
            threshold=2.5,
            eos_ids=eos,
            max_new_tokens=max_new,
            pad_id=tok.pad_token_id or 0,
        )
        lines.append(
            f"EAD batch of {len(ids)} (padded, threshold 2.5): large fraction {out.large_fraction:.2f}, "
            f"{sum(map(len, out.token_ids)) / out.seconds:.2f} tokens/s."
        )
        lines.append("")
    lines += [
        (
            "| EAD threshold (bits) | timing | large-model fraction | param-weighted cost "
            "| agreement with large greedy | tokens the large model would pick | tokens/s |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for tau, timing, f, cost, agree, local, tps in sweep:
        lines.append(
            f"| {tau:g} | {timing} | {f:.2f} | {cost:.2f} | {agree:.2f} | {local:.2f} | {tps:.2f} |"
        )
    lines.append("")
    lines.append(
        f"Expert-only greedy: {n_base / base_time:.2f} tokens/s. Agreement = fraction of positions equal to "
        "the large model's own greedy output (one early difference shifts the rest); 'would pick' = "
        "fraction of EAD's tokens equal to the large model's argmax on the same prefix. "
        "Cost = f_L + (1 - f_L) P_S / P_L."
    )
    if plot is not None:
        _plot(sweep, plot)
        lines.append(f"\n![EAD large-model fraction vs threshold]({plot.name})")
    return "\n".join(lines) + "\n"


def _plot(sweep, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = [s for s in sweep if math.isfinite(s[0])]
    xs = [s[0] for s in finite]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [s[2] for s in finite], "o-", label="large-model token fraction")
    ax.plot(xs, [s[4] for s in finite], "s--", label="agreement with large greedy (position)")
    ax.plot(xs, [s[5] for s in finite], "x-.", label="tokens the large model would pick")
    ax.plot(xs, [s[3] for s in finite], "^:", label="param-weighted cost")
    ax.set_xlabel("EAD threshold (bits, rolling mean of 5)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"EAD on SmolLM2-135M: 30 layers vs first {K_LAYERS}")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    print(run(quick=quick, plot=None if quick else PLOT))
