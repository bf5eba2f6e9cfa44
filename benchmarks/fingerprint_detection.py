"""Fingerprint detection on SmolLM2-135M-Instruct: how often each cheat is rejected, how often honest work is.

Per sample (one chat question, greedy, `--new-tokens` tokens) the honest reference is a pinned float32
generation with the KV cache; honest variations (KV cache off) must be accepted, and each cheat must be
rejected by the one-prefill validator (`veriml.models.fingerprint.validate`). Cheats: SmolLM2 with its last
4 layers dropped, another prompt's answer, bfloat16 weights, int8 dynamically quantized linears, seeded
sampling instead of greedy, an output token edited after generation (middle and last), and the right
output with another run's fingerprint. Per-chunk statistics are kept to profile the thresholds' margins.
`.venv/bin/python benchmarks/fingerprint_detection.py --samples 200` (the sample count is a flag).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from smollm_agreement import QUESTIONS  # noqa: E402

from veriml.models import fingerprint as fp  # noqa: E402
from veriml.models.hf_runtime import ChatModel  # noqa: E402

MODEL = "smollm2-135m-instruct"
RESULTS = Path(__file__).parent / "results"


def variant(chat: ChatModel, model: torch.nn.Module) -> ChatModel:
    """The same tokenizer and manifest around another model: what a cheating node would run."""
    return ChatModel(chat.manifest, model.eval().requires_grad_(False), chat.tokenizer, chat.directory)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--out", default="fingerprint_detection")
    args = ap.parse_args()
    chat = ChatModel.load(MODEL)
    truncated = copy.deepcopy(chat.model)
    truncated.model.layers = truncated.model.layers[:-4]
    truncated.config.num_hidden_layers = len(truncated.model.layers)
    bf16 = copy.deepcopy(chat.model).to(torch.bfloat16)
    int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(chat.model), {torch.nn.Linear}, dtype=torch.qint8)
    cheats_models = {"truncated-4-layers": variant(chat, truncated), "bfloat16": variant(chat, bf16)}
    cheats_models["int8-dynamic"] = variant(chat, int8)
    counts: dict[str, dict[str, int]] = {}
    chunks: dict[str, list[list[float]]] = {}

    def record(name: str, v: fp.Validation, honest: bool) -> None:
        c = counts.setdefault(name, {"n": 0, "accepted": 0, "honest": honest})
        c["n"] += 1
        c["accepted"] += int(v.accepted)
        chunks.setdefault(name, []).extend([k.exponent_matches, k.mantissa_mean, k.mantissa_median] for k in v.chunks)

    n_q = len(QUESTIONS)
    for s in range(args.samples):
        # questions repeat past the list's end, so later samples ask for a different answer length
        question = f"{QUESTIONS[s % n_q]} Answer in {1 + s // n_q} sentences."
        ids = chat.prompt_ids([{"role": "user", "content": question}])
        other = chat.prompt_ids([{"role": "user", "content": f"{QUESTIONS[(s + 1) % n_q]} Answer briefly."}])
        ref = fp.generate(chat, ids, args.new_tokens)
        toks = list(ref.output.tokens)

        def check(tokens: list[int], fingerprint: bytes, greedy: bool = True, ids=ids) -> fp.Validation:  # noqa: ANN001
            return fp.validate(chat.model, ids, tokens, fingerprint, greedy=greedy)

        record("honest: KV cache on", check(toks, ref.fingerprint), True)
        nocache = fp.generate(chat, ids, args.new_tokens, use_cache=False)
        record("honest: KV cache off", check(list(nocache.output.tokens), nocache.fingerprint), True)
        for name, m in cheats_models.items():
            g = fp.generate(m, ids, args.new_tokens)
            record(f"cheat: {name}", check(list(g.output.tokens), g.fingerprint), False)
        o = fp.generate(chat, other, args.new_tokens)
        record("cheat: another prompt's answer", check(list(o.output.tokens), o.fingerprint), False)
        record("cheat: right output, another run's fingerprint", check(toks, o.fingerprint), False)
        sampled = fp.generate(chat, ids, args.new_tokens, seed=1000 + s)
        record("cheat: sampled instead of greedy", check(list(sampled.output.tokens), sampled.fingerprint), False)
        mid = len(toks) // 2
        edited = toks[:mid] + [(toks[mid] + 1) % 49152] + toks[mid + 1 :]
        record("cheat: middle token edited", check(edited, ref.fingerprint), False)
        record("cheat: last token edited", check(toks[:-1] + [(toks[-1] + 1) % 49152], ref.fingerprint), False)
        print(f"sample {s + 1}/{args.samples}", {k: f"{v['accepted']}/{v['n']}" for k, v in counts.items()}, flush=True)

    rows = []
    for name, c in counts.items():
        stats = chunks[name]
        rows.append(
            {
                "case": name,
                "honest": c["honest"],
                "runs": c["n"],
                "accepted": c["accepted"],
                "rate": (c["accepted"] if c["honest"] else c["n"] - c["accepted"]) / c["n"],
                "min_exponent_matches": min((x[0] for x in stats), default=None),
                "max_exponent_matches": max((x[0] for x in stats), default=None),
                "min_mantissa_mean": min((x[1] for x in stats), default=None),
                "max_mantissa_mean": max((x[1] for x in stats), default=None),
                "max_mantissa_median": max((x[2] for x in stats), default=None),
            }
        )
    result = {
        "model": MODEL,
        "samples": args.samples,
        "new_tokens": args.new_tokens,
        "thresholds": vars(fp.Thresholds()),
        "rows": rows,
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Fingerprint detection on {MODEL} ({args.samples} samples x {args.new_tokens} new tokens, greedy)",
        "",
        f"`.venv/bin/python benchmarks/fingerprint_detection.py --samples {args.samples}`; thresholds "
        f"{vars(fp.Thresholds())}. Rate = acceptance for honest cases, rejection for cheats.",
        "",
        "| case | runs | rate | exponent matches (min-max) | mantissa mean (min-max) | max median |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['runs']} | {100 * r['rate']:.1f}% | {r['min_exponent_matches']}-"
            f"{r['max_exponent_matches']} | {r['min_mantissa_mean']}-{r['max_mantissa_mean']} | "
            f"{r['max_mantissa_median']} |"
        )
    lines.append("")
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
