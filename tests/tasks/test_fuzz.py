"""`tasks.execute` never raises and always gives a small document, whatever a job's bytes are."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veriml import tasks
from veriml.jobspec import MAX_ERROR_CHARS, canonical
from veriml.models.runners import load_runner

ERROR_DOC_BOUND = MAX_ERROR_CHARS + 64  # {"error": "..."} around a capped message (JSON escapes count once more)
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True)


@pytest.fixture(scope="module")
def runners():
    names = ("tiny-gpt", "tiny-shapes", "smollm2-135m-instruct", "minilm-l6-v2")
    return {n: load_runner(n) for n in names}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Short generations only: params that would run the model long are capped at 2 new tokens.
small_params = st.fixed_dictionaries(
    {}, optional={"max_new_tokens": st.integers(1, 2), "seed": st.integers(0, 2**64 - 1)}
).map(canonical)
params = st.one_of(st.binary(max_size=64), json_values.map(canonical), small_params, st.just(b"[" * 5000))
inputs = st.one_of(
    st.binary(max_size=300),
    json_values.map(canonical),
    st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=3).map(canonical),
    st.lists(
        st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "bot"]), "content": st.text(max_size=20)}),
        min_size=1,
        max_size=2,
    ).map(canonical),
    st.just(b"[" * 100_000),
    st.just(b"x" * 1_100_000),
)


def _check(doc: tasks.Output, task: str) -> None:
    data = doc.encode()
    assert tasks.decode(task, data, None).encode() == data or task == "embeddings"
    if doc.error is not None:
        assert len(data) <= ERROR_DOC_BOUND, data[:100]
        assert len(json.loads(data)["error"]) <= MAX_ERROR_CHARS
    else:
        assert len(data) < 1_000_000
    doc.digest()


@pytest.mark.parametrize("name,examples", [("tiny-gpt", 60), ("tiny-shapes", 60), ("minilm-l6-v2", 30)])
def test_execute_never_raises_and_stays_small(runners, name, examples):
    runner = runners[name]

    @settings(SETTINGS, max_examples=examples)
    @given(data=inputs, p=params)
    def run(data, p):
        # tiny-gpt's default length is 48 bytes of model: fast; the others have no length at all.
        _check(tasks.execute(runner, data, p), runner.manifest.task)

    run()


def test_chat_execute_never_raises_and_stays_small(runners):
    runner = runners["smollm2-135m-instruct"]

    @settings(SETTINGS, max_examples=12)
    @given(data=inputs, p=st.one_of(small_params, st.binary(max_size=32), st.just(b"[" * 5000)))
    def run(data, p):
        _check(tasks.execute(runner, data, p), "chat")

    run()


def test_a_huge_label_gives_a_bounded_error_not_megabytes(runners):
    doc = tasks.execute(runners["tiny-shapes"], b"x" * 1_100_000, b"")
    assert doc.error is not None and len(doc.encode()) <= ERROR_DOC_BOUND


def test_deeply_nested_params_are_invalid_params_not_recursion(runners):
    for name in ("tiny-gpt", "tiny-shapes", "minilm-l6-v2"):
        doc = tasks.execute(runners[name], b"hello", b"[" * 900 + b"]" * 900)
        assert doc.error is not None and doc.error.startswith("invalid params"), doc.error


def test_an_exception_inside_a_runner_becomes_the_same_bounded_document(runners):
    class Broken:
        manifest = runners["tiny-gpt"].manifest

        def run(self, *a):  # noqa: ANN002
            raise ZeroDivisionError("secret " * 1000)

    a = tasks.execute(Broken(), b"x", b"")
    b = tasks.execute(Broken(), b"y", b"")
    assert a.encode() == b.encode() == canonical({"error": "job failed: ZeroDivisionError"})
