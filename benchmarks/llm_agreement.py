"""Do honest nodes running `tiny-gpt` agree token for token? Greedy and seeded sampling, across the honest
variations an operator might run: threads 1 vs 2, batch 1 vs 8, float32 vs bfloat16 autocast, KV cache vs
recomputing the whole context, and PyTorch eager vs ONNX Runtime.

Block Entropy reported 100% agreement for LLMs under greedy (and n-beam) decoding. Each variation here
runs the same prompts as the pinned reference (`veriml.models.runtime`: one thread, float32, batch 1, KV
cache) and counts the prompts whose whole continuation is identical. Where one is not, the script finds
the first differing step and the reference's gap between its two best logits there: a flip happens only
where the model was nearly undecided.

    .venv/bin/python benchmarks/llm_agreement.py            # 64 prompts x 48 tokens
    .venv/bin/python benchmarks/llm_agreement.py --quick    # 16 prompts
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from veriml.models.runtime import TextModel
from veriml.models.tiny_gpt import TinyGPT, _pick, generate

MODEL = "tiny-gpt"
PROMPT_BYTES = 24  # every prompt the same length, so 8 of them batch without padding
SEED_BASE = 7_000
RESULTS = Path(__file__).resolve().parent / "results"

Logits = Callable[[Tensor], Tensor]  # (batch, t) token ids -> (batch, t, vocab) logits


def prompts(n: int) -> list[bytes]:
    """n prompts of PROMPT_BYTES bytes: the openings of the pydoc topics, in key order."""
    from pydoc_data.topics import topics

    out = []
    for _, text in sorted(topics.items()):
        data = " ".join(text.split()).encode("utf-8")[:PROMPT_BYTES]
        if len(data) == PROMPT_BYTES and data not in out:
            out.append(data)
        if len(out) == n:
            return out
    raise ValueError(f"only {len(out)} prompts available")


def decode_loop(forward: Logits, batch: list[bytes], n_new: int, seeds: list[int] | None) -> list[tuple[int, ...]]:
    """Greedy (seeds None) or per-prompt seeded sampling, recomputing the whole context every step."""
    gens = None if seeds is None else [torch.Generator().manual_seed(s) for s in seeds]
    ids = torch.tensor([list(p) for p in batch])
    out: list[list[int]] = [[] for _ in batch]
    for _ in range(n_new):
        logits = forward(ids)[:, -1]
        nxt = [_pick(logits[i], None if gens is None else gens[i], 1.0) for i in range(len(batch))]
        for i, t in enumerate(nxt):
            out[i].append(t)
        ids = torch.cat([ids, torch.tensor(nxt)[:, None]], dim=1)
    return [tuple(o) for o in out]


def cached_batch(model: TinyGPT, batch: list[bytes], n_new: int, seeds: list[int] | None) -> list[tuple[int, ...]]:
    """Like `generate`, with a KV cache, but for several prompts in one batch."""
    gens = None if seeds is None else [torch.Generator().manual_seed(s) for s in seeds]
    logits, cache = model(torch.tensor([list(p) for p in batch]))
    out: list[list[int]] = [[] for _ in batch]
    for step in range(n_new):
        nxt = [_pick(logits[i, -1], None if gens is None else gens[i], 1.0) for i in range(len(batch))]
        for i, t in enumerate(nxt):
            out[i].append(t)
        if step < n_new - 1:
            logits, cache = model(torch.tensor(nxt)[:, None], cache)
    return [tuple(o) for o in out]


def onnx_forward(model: TinyGPT, threads: int) -> Logits:
    """The model's full-context forward pass exported to ONNX and run by ONNX Runtime."""
    import onnxruntime as ort

    class Full(torch.nn.Module):
        def __init__(self, m: TinyGPT) -> None:
            super().__init__()
            self.m = m

        def forward(self, idx: Tensor) -> Tensor:
            return self.m(idx)[0]

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes; checked by comparing logits below
        torch.onnx.export(
            Full(model),
            (torch.zeros(1, PROMPT_BYTES, dtype=torch.long),),
            buf,
            input_names=["idx"],
            output_names=["logits"],
            dynamic_axes={"idx": {0: "batch", 1: "t"}, "logits": {0: "batch", 1: "t"}},
            opset_version=17,
            dynamo=False,
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    return lambda ids: torch.from_numpy(sess.run(None, {"idx": ids.numpy()})[0])


def variations(model: TinyGPT, n_new: int) -> dict[str, Callable[[list[bytes], list[int] | None], list]]:
    """name -> run(prompts, seeds) for the reference and each honest variation."""
    eager = lambda ids: model(ids)[0]  # noqa: E731
    ort_forward = onnx_forward(model, 1)

    def one_by_one(threads: int = 1, bf16: bool = False) -> Callable:
        def run(ps: list[bytes], seeds: list[int] | None) -> list:
            torch.set_num_threads(threads)
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
            with ctx:
                res = [tuple(generate(model, p, n_new, None if seeds is None else s)) for p, s in _pairs(ps, seeds)]
            torch.set_num_threads(1)
            return res

        return run

    def in_batches(fn: Callable, size: int) -> Callable:
        def run(ps: list[bytes], seeds: list[int] | None) -> list:
            out = []
            for i in range(0, len(ps), size):
                out += fn(ps[i : i + size], n_new, None if seeds is None else seeds[i : i + size])
            return out

        return run

    return {
        "reference": one_by_one(),
        "threads 1 vs 2": one_by_one(threads=2),
        "batch 1 vs 8": in_batches(lambda b, n, s: cached_batch(model, b, n, s), 8),
        "float32 vs bfloat16 autocast": one_by_one(bf16=True),
        "KV cache vs full recompute": in_batches(lambda b, n, s: decode_loop(eager, b, n, s), 1),
        "eager vs ONNX Runtime": in_batches(lambda b, n, s: decode_loop(ort_forward, b, n, s), 1),
    }


def _pairs(ps: list[bytes], seeds: list[int] | None) -> list[tuple[bytes, int | None]]:
    return [(p, None if seeds is None else seeds[i]) for i, p in enumerate(ps)]


def logit_gap(model: TinyGPT, prompt: bytes, tokens: tuple[int, ...], step: int) -> float:
    """The reference's gap between its two best logits when it chose `tokens[step]`."""
    logits = model(torch.tensor([list(prompt) + list(tokens[:step])]))[0][0, -1]
    top = torch.topk(logits.float(), 2).values
    return float(top[0] - top[1])


def compare(model: TinyGPT, ps: list[bytes], ref: list, other: list, sampled: bool) -> dict:
    """Agreement of one variation with the reference, and where and why it diverged."""
    same = [a == b for a, b in zip(ref, other, strict=True)]
    firsts, gaps = [], []
    for p, a, b in zip(ps, ref, other, strict=True):
        if a == b:
            continue
        k = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
        firsts.append(k)
        if not sampled:
            gaps.append(logit_gap(model, p, a, k))
    n_tok = sum(len(a) for a in ref)
    prefix = sum(
        next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), len(a))
        for a, b in zip(ref, other, strict=True)
    )
    return {
        "agreement": float(np.mean(same)),
        "diverged": len(firsts),
        "tokens_before_divergence": prefix / n_tok,
        "first_divergence_steps": firsts,
        "logit_gap_at_divergence": gaps,
    }


def logit_drift(model: TinyGPT, ps: list[bytes], ref: list, ort_forward: Logits) -> dict[str, float]:
    """Largest |logit difference| from the reference's full-context forward pass, over every position of
    the prompts and their greedy continuations: how far each variation moves the numbers."""
    seqs = torch.tensor([list(p) + list(t) for p, t in zip(ps, ref, strict=True)])
    base = torch.cat([model(seqs[i : i + 1])[0] for i in range(len(seqs))])
    torch.set_num_threads(2)
    two = torch.cat([model(seqs[i : i + 1])[0] for i in range(len(seqs))])
    torch.set_num_threads(1)
    batched = torch.cat([model(seqs[i : i + 8])[0] for i in range(0, len(seqs), 8)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = torch.cat([model(seqs[i : i + 1])[0] for i in range(len(seqs))]).float()
    onnx = torch.cat([ort_forward(seqs[i : i + 1]) for i in range(len(seqs))])
    # The KV-cache path: the prompt in one pass, then one token at a time.
    n_p = len(ps[0])
    cached = []
    for i in range(len(seqs)):
        logits, cache = model(seqs[i : i + 1, :n_p])
        steps = [logits]
        for k in range(n_p, seqs.size(1)):
            logits, cache = model(seqs[i : i + 1, k : k + 1], cache)
            steps.append(logits)
        cached.append(torch.cat(steps, dim=1))
    kv = torch.cat(cached)
    diff = lambda x: float((x - base).abs().max())  # noqa: E731
    return {
        "threads 1 vs 2": diff(two),
        "batch 1 vs 8": diff(batched),
        "float32 vs bfloat16 autocast": diff(bf16),
        "KV cache vs full recompute": diff(kv),
        "eager vs ONNX Runtime": diff(onnx),
    }


def reference_gaps(model: TinyGPT, ps: list[bytes], ref: list) -> list[float]:
    """The reference's top-2 logit gap at every greedy step (how decided the model usually is)."""
    out = []
    for p, toks in zip(ps, ref, strict=True):
        logits = model(torch.tensor([list(p) + list(toks[:-1])]))[0][0, len(p) - 1 :]
        top = torch.topk(logits.float(), 2, dim=-1).values
        out += (top[:, 0] - top[:, 1]).tolist()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="16 prompts")
    ap.add_argument("--prompts", type=int, help="number of prompts (default 64, quick 16)")
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    t0 = time.time()
    load_before = os.getloadavg()[0]
    tm = TextModel.load(MODEL)
    model = tm.model
    ps = prompts(args.prompts or (16 if args.quick else 64))
    seeds = [SEED_BASE + i for i in range(len(ps))]
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    results: dict[str, dict] = {"greedy": {}, "sampled": {}}
    with torch.inference_mode():
        runs = variations(model, args.new_tokens)
        for mode, sd in (("greedy", None), ("sampled", seeds)):
            ref = runs["reference"](ps, sd)
            for name, run in runs.items():
                if name != "reference":
                    results[mode][name] = compare(model, ps, ref, run(ps, sd), sd is not None)
                    print(f"{mode:8s} {name:30s} agreement {results[mode][name]['agreement']:.1%}", flush=True)
            if mode == "greedy":
                gaps = reference_gaps(model, ps, ref)
                drift = logit_drift(model, ps, ref, onnx_forward(model, 1))
    torch.set_num_threads(threads_before)
    result = {
        "model": MODEL,
        "prompts": len(ps),
        "new_tokens": args.new_tokens,
        "greedy": results["greedy"],
        "sampled": results["sampled"],
        "max_logit_drift": drift,
        "reference_logit_gap": {
            "median": float(np.median(gaps)),
            "p1": float(np.percentile(gaps, 1)),
            "share_below_0.05": float(np.mean(np.array(gaps) < 0.05)),
        },
        "quick": args.quick,
        "seconds": time.time() - t0,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "load_1m_before": load_before,
            "load_1m_after": os.getloadavg()[0],
        },
    }
    suffix = "_quick" if args.quick else ""
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"llm_agreement{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (args.out / f"llm_agreement{suffix}.md").write_text(md)
    print(md)


def markdown(r: dict) -> str:
    """The agreement table, with the logit gaps that explain any divergence."""
    lines = [
        "# Token agreement of `tiny-gpt` across honest variations",
        "",
        f"`benchmarks/llm_agreement.py{' --quick' if r['quick'] else ''}`: {r['prompts']} prompts x "
        f"{r['new_tokens']} new tokens, against the pinned reference (1 thread, float32, batch 1, KV cache, eager); "
        f"torch {r['machine']['torch']}, {r['machine']['date']}, {r['seconds']:.0f} s.",
        "",
        "| variation | max logit drift | greedy: identical | tokens before divergence | "
        "top-2 logit gap where it diverged | sampled (seeded): identical |",
        "|---|---|---|---|---|---|",
    ]
    for name, g in r["greedy"].items():
        s = r["sampled"][name]
        gaps = ", ".join(f"{x:.3f}" for x in sorted(g["logit_gap_at_divergence"])[:4]) or "-"
        lines.append(
            f"| {name} | {r['max_logit_drift'][name]:.2g} | {g['agreement']:.1%} | "
            f"{g['tokens_before_divergence']:.1%} | {gaps} | {s['agreement']:.1%} |"
        )
    gap = r["reference_logit_gap"]
    lines += [
        "",
        f"The reference's gap between its two best logits: median {gap['median']:.2f}, 1st percentile "
        f"{gap['p1']:.3f}; {gap['share_below_0.05']:.2%} of greedy steps are within 0.05.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
