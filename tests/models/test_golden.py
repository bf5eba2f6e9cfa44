"""Golden outputs of the shipped tiny-gpt: fixed prompts, recorded token ids, compared exactly.

Every node must give the same tokens for the same job, so these outputs are part of the contract. A change
that alters them (new weights, another runtime or kernel path, a torch upgrade that moves the numbers) must
say so in its commit message, and regenerate the file with `python tests/models/test_golden.py`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from veriml.models.runtime import TextModel

GOLDEN = Path(__file__).with_name("golden_tiny_gpt.json")
# (prompt, seed): three greedy prompts, plus one seeded run to pin sampling too.
CASES: list[tuple[str, int | None]] = [
    ("The ", None),
    ("def __init__(self", None),
    ("Class definitions\n*****************\n\nA class definition defines ", None),
    ("The ", 42),
]
NEW_TOKENS = 48


def record() -> dict[str, Any]:
    """Run every case on the shipped model, in the file's format."""
    tm = TextModel.load("tiny-gpt")
    cases = []
    for prompt, seed in CASES:
        out = tm.run(prompt.encode(), NEW_TOKENS, seed=seed)
        text = out.text.decode("utf-8", "backslashreplace")  # for people reading the file; ids are compared
        cases.append({"prompt": prompt, "seed": seed, "tokens": list(out.tokens), "text": text})
    return {
        "model": "tiny-gpt",
        "model_id": "0x" + tm.model_id.hex(),
        "max_new_tokens": NEW_TOKENS,
        "cases": cases,
    }


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_golden_file_covers_the_cases(golden: dict[str, Any]) -> None:
    assert [(c["prompt"], c["seed"]) for c in golden["cases"]] == CASES


def test_golden_outputs(golden: dict[str, Any]) -> None:
    now = record()
    assert now["model_id"] == golden["model_id"], "shipped manifest changed: regenerate and say so"
    for want, got in zip(golden["cases"], now["cases"], strict=True):
        assert got["tokens"] == want["tokens"], f"output changed for {want['prompt']!r} (seed {want['seed']})"


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(record(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}")
