"""Do honest nodes running SmolLM2-135M-Instruct agree token for token? Greedy and seeded sampling across
the honest variations an operator might run: threads 1 vs 2, a batch of 4 (left-padded) vs 1, KV cache on
vs off, bfloat16 autocast vs float32. ONNX Runtime is not run here: exporting a 135M-parameter Llama with
a KV cache through torch.onnx did not fit this study's 2-core time budget (stated, not measured).

Each variation runs the same chat prompts as the pinned reference (`ChatModel.generate`: one thread,
float32, batch 1, KV cache) and counts prompts whose whole answer is identical. Where one is not, the
script reports the first differing step and the reference's gap between its two best logits there.

    .venv/bin/python benchmarks/smollm_agreement.py            # 64 prompts x 24 new tokens
    .venv/bin/python benchmarks/smollm_agreement.py --quick    # 8 prompts
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from veriml.models.hf_runtime import ChatModel

MODEL = "smollm2-135m-instruct"
SEED_BASE = 9_000
RESULTS = Path(__file__).resolve().parent / "results"

QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colours.",
    "How many legs does a spider have?",
    "What does a thermometer measure?",
    "Give a synonym for happy.",
    "What is 7 times 8?",
    "Why is the sky blue?",
    "What is the boiling point of water in Celsius?",
    "Who wrote Romeo and Juliet?",
    "What is photosynthesis?",
    "Name a planet larger than Earth.",
    "What is the opposite of cold?",
    "How many days are in a leap year?",
    "What language is spoken in Brazil?",
    "What is a prime number?",
    "Translate 'thank you' into Spanish.",
    "What gas do humans exhale?",
    "What is the largest ocean?",
    "Suggest a name for a pet goldfish.",
    "What is the square root of 81?",
    "What do bees make?",
    "Explain what a noun is.",
    "What is the freezing point of water in Fahrenheit?",
    "Name a mammal that flies.",
    "What is the tallest mountain on Earth?",
    "Write a haiku about rain.",
    "What is the chemical symbol for gold?",
    "How many continents are there?",
    "What is an adjective?",
    "Give one tip for sleeping better.",
    "What is the main ingredient of guacamole?",
    "What does CPU stand for?",
    "Why do leaves change colour?",
    "What is the speed of light, roughly?",
    "Name a famous painter.",
    "What is a haiku?",
    "How do you make a cup of tea?",
    "What is the plural of mouse?",
    "Name a fruit that is yellow.",
    "What is gravity?",
    "What is the currency of Japan?",
    "What is a verb?",
    "Why do we need sleep?",
    "What is the capital of Italy?",
    "Name two renewable energy sources.",
    "What is 15 plus 27?",
    "What is a volcano?",
    "Describe a cat in one sentence.",
    "What is the longest river in Africa?",
    "How many hours are in a day?",
    "What is the largest desert?",
    "What instrument has 88 keys?",
    "What is democracy?",
    "Name an animal that lives in the Arctic.",
    "What is a rainbow?",
    "What does DNA stand for?",
    "Give an example of a simile.",
    "What is the capital of Canada?",
    "What do plants need to grow?",
    "What is the hardest natural substance?",
    "Name a sport played with a bat.",
    "What is an atom?",
    "Say hello in French.",
    "What is the smallest prime number?",
]


def chats(model: ChatModel, n: int) -> list[list[int]]:
    """The chat-templated prompt ids of the first n questions (one short user message each)."""
    return [model.prompt_ids([{"role": "user", "content": q + " Answer briefly."}]) for q in QUESTIONS[:n]]


def one_by_one(model: ChatModel, ids: list[list[int]], n: int, seeds, threads=1, cache=True, bf16=False):  # noqa: ANN001, ANN201
    out = []
    for i, p in enumerate(ids):
        seed = None if seeds is None else seeds[i]
        if threads == 1 and not bf16:
            out.append(model.generate(p, n, seed, use_cache=cache).tokens)
            continue
        # Unpinned on purpose: the variation is the thread count or the dtype.
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out.append(_loop(model, [p], n, None if seed is None else [seed], cache)[0])
        finally:
            torch.set_num_threads(before)
    return out


def _loop(model: ChatModel, batch: list[list[int]], n: int, seeds, cache: bool = True) -> list[tuple[int, ...]]:  # noqa: ANN001
    """Left-padded batched decoding with per-row seeded generators (the same draws as batch 1)."""
    width = max(len(p) for p in batch)
    pad = model.tokenizer.pad_token_id or 0
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
    gens = None if seeds is None else [torch.Generator().manual_seed(s) for s in seeds]
    outs: list[list[int]] = [[] for _ in batch]
    done = [False] * len(batch)
    past = None
    cur = ids
    for _ in range(n):
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        if past is not None:
            pos = pos[:, -1:]
        res = model.model(input_ids=cur, attention_mask=mask, position_ids=pos, past_key_values=past, use_cache=cache)
        logits = res.logits[:, -1].float()
        nxt = []
        for r in range(len(batch)):
            if gens is None:
                t = int(torch.argmax(logits[r]))
            else:
                t = int(torch.multinomial(torch.softmax(logits[r], -1), 1, generator=gens[r]))
            if not done[r]:
                outs[r].append(t)
                done[r] = t in model.eos_ids
            nxt.append(t)
        if all(done):
            break
        step = torch.tensor(nxt).unsqueeze(1)
        mask = torch.cat([mask, torch.ones(len(batch), 1, dtype=mask.dtype)], 1)
        if cache:
            past, cur = res.past_key_values, step
        else:
            ids = torch.cat([ids, step], 1)
            cur = ids
    return [tuple(o) for o in outs]


def batched(model: ChatModel, ids: list[list[int]], n: int, seeds, size: int = 4):  # noqa: ANN001, ANN201
    out: list[tuple[int, ...]] = []
    from veriml.models.runtime import pinned

    for i in range(0, len(ids), size):
        with pinned():
            out += _loop(model, ids[i : i + size], n, None if seeds is None else seeds[i : i + size])
    return out


def logit_gap(model: ChatModel, prompt: list[int], tokens: tuple[int, ...], step: int) -> float:
    """The reference's gap between its two best logits at `step` of its own answer."""
    from veriml.models.runtime import pinned

    with pinned():
        logits = model.model(input_ids=torch.tensor([prompt + list(tokens[:step])])).logits[0, -1].float()
    top = torch.topk(logits, 2).values
    return float(top[0] - top[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--variations", default="threads-2,batch-4,no-kv-cache,bfloat16-autocast")
    ap.add_argument("--out", default=None, help="results name (default smollm_agreement[_quick])")
    args = ap.parse_args()
    wanted = args.variations.split(",")
    n_prompts = 8 if args.quick else args.prompts
    model = ChatModel.load(MODEL)
    ids = chats(model, n_prompts)
    seeds = [SEED_BASE + i for i in range(n_prompts)]
    rows = []
    for mode, sd in (("greedy", None), ("seeded", seeds)):
        t = time.perf_counter()
        ref = one_by_one(model, ids, args.new_tokens, sd)
        ref_s = time.perf_counter() - t
        runs = {
            "threads-2": lambda sd=sd: one_by_one(model, ids, args.new_tokens, sd, threads=2),
            "batch-4": lambda sd=sd: batched(model, ids, args.new_tokens, sd),
            "no-kv-cache": lambda sd=sd: one_by_one(model, ids, args.new_tokens, sd, cache=False),
            "bfloat16-autocast": lambda sd=sd: one_by_one(model, ids, args.new_tokens, sd, bf16=True),
        }
        for name, fn in runs.items():
            if name not in wanted:
                continue
            t = time.perf_counter()
            got = fn()
            secs = time.perf_counter() - t
            diverged = []
            for i, (a, b) in enumerate(zip(ref, got, strict=True)):
                if a != b:
                    k = next((j for j, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
                    diverged.append({"prompt": i, "step": k, "gap": logit_gap(model, ids[i], a, k)})
            row = {
                "mode": mode,
                "variation": name,
                "agree": n_prompts - len(diverged),
                "prompts": n_prompts,
                "seconds": round(secs, 1),
                "reference_seconds": round(ref_s, 1),
                "diverged": diverged,
            }
            rows.append(row)
            print(f"{mode:7} {name:18} {row['agree']}/{n_prompts} identical  ({secs:.0f}s)", flush=True)
            for d in diverged:
                print(f"        prompt {d['prompt']}: first differs at step {d['step']}, top-2 gap {d['gap']:.4f}")
    sample = model.decode(one_by_one(model, ids[:1], args.new_tokens, None)[0]).decode()
    result = {
        "model": MODEL,
        "prompts": n_prompts,
        "new_tokens": args.new_tokens,
        "rows": rows,
        "sample": {"question": QUESTIONS[0], "answer": sample},
        "onnx": "not run: exporting the 135M Llama with a KV cache did not fit this study's 2-core budget",
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    name = args.out or ("smollm_agreement_quick" if args.quick else "smollm_agreement")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# SmolLM2-135M-Instruct honest agreement ({n_prompts} chat prompts x {args.new_tokens} new tokens)",
        "",
        "`.venv/bin/python benchmarks/smollm_agreement.py`; reference: pinned, 1 thread, float32, batch 1, KV cache.",
        "",
        "| mode | variation | identical answers | first divergences (step: top-2 logit gap) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        div = ", ".join(f"{d['step']}: {d['gap']:.3f}" for d in r["diverged"]) or "-"
        lines.append(f"| {r['mode']} | {r['variation']} | {r['agree']}/{r['prompts']} | {div} |")
    lines += ["", f"ONNX Runtime: {result['onnx']}.", "", f"Sample: {QUESTIONS[0]!r} -> {sample!r}", ""]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
