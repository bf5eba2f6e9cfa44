"""Fingerprint cost on SmolLM2-135M-Instruct: validator / generator time, bytes per 32 tokens, quorum-of-3 compute.

For each length: a plain pinned greedy generation, the same generation with the final-norm hook and the
fingerprint, and one validator prefill over prompt + output. A fingerprint quorum of 3 costs one fingerprinted
generation plus two validations; re-execution costs three generations. Ratios are taken within one run.
`.venv/bin/python benchmarks/fingerprint_cost.py [--lengths 32,128,256] [--repeats 1]`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from veriml.models import fingerprint as fp  # noqa: E402
from veriml.models.hf_runtime import ChatModel  # noqa: E402

MODEL = "smollm2-135m-instruct"
RESULTS = Path(__file__).parent / "results"
QUESTION = "Write a long, detailed story about a lighthouse keeper and a storm. Use many paragraphs."


def best(fn, repeats: int):  # noqa: ANN001, ANN201
    """The fastest of `repeats` timed calls, and the last call's value."""
    times, value = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return min(times), value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="32,128,256")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default="fingerprint_cost")
    args = ap.parse_args()
    chat = ChatModel.load(MODEL)
    ids = chat.prompt_ids([{"role": "user", "content": QUESTION}])
    chat.generate(ids, 4)  # warm-up: first-call allocations are not the model's cost
    rows = []
    for n in [int(x) for x in args.lengths.split(",")]:
        plain_s, plain = best(lambda n=n: chat.generate(ids, n), args.repeats)
        gen_s, g = best(lambda n=n: fp.generate(chat, ids, n), args.repeats)
        tokens = list(g.output.tokens)
        val_s, v = best(lambda tokens=tokens, g=g: fp.validate(chat.model, ids, tokens, g.fingerprint), args.repeats)
        chunks = -(-len(tokens) // 32)
        row = {
            "requested_tokens": n,
            "tokens": len(tokens),
            "same_tokens_as_plain": tuple(tokens) == plain.tokens,
            "generate_s": round(plain_s, 3),
            "generate_with_fingerprint_s": round(gen_s, 3),
            "validate_s": round(val_s, 3),
            "validator_over_generator": round(val_s / plain_s, 4),
            "hook_overhead": round(gen_s / plain_s, 4),
            "fingerprint_bytes": len(g.fingerprint),
            "bytes_per_32_tokens": len(g.fingerprint) / chunks,
            "quorum3_fingerprint_over_one_generation": round((gen_s + 2 * val_s) / plain_s, 4),
            "quorum3_reexecution_over_one_generation": 3.0,
            "accepted": v.accepted,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "model": MODEL,
        "prompt": QUESTION,
        "prompt_tokens": len(ids),
        "repeats": args.repeats,
        "rows": rows,
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": 1},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Fingerprint cost on {MODEL} (prompt of {len(ids)} tokens, pinned, 1 thread, best of {args.repeats})",
        "",
        "`.venv/bin/python benchmarks/fingerprint_cost.py`. Goals: validator/generator <= 0.1 at 128 tokens; "
        "<= 258 bytes per 32 tokens; fingerprint quorum of 3 <= 1.3x one generation (re-execution: 3x).",
        "",
        "| new tokens | generate s | + hook s | validate s | validator/generator | bytes/32 tok | quorum-3 / one gen |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['tokens']} | {r['generate_s']} | {r['generate_with_fingerprint_s']} | {r['validate_s']} | "
            f"{r['validator_over_generator']} | {r['bytes_per_32_tokens']:.0f} | "
            f"{r['quorum3_fingerprint_over_one_generation']} |"
        )
    lines.append("")
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
