"""OpenAI request bodies -> one typed `JobRequest`, checked against what the network serves.

Pure functions: a parsed JSON body and a `Catalog` in, a `JobRequest` or an `ApiError` out. Every check
that can refuse a request happens here, before any coin moves, with the limits the SDK and the nodes
apply (prompt bytes, message shapes, token counts, quorum sizes).

The verification choice travels in the body as `"veriml": {"scheme": "quorum", "n": 3}` (the openai
client sends it with `extra_body=`); both keys are optional and default to `DEFAULT_SCHEME`/`DEFAULT_N`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from veriml import schemes
from veriml.client.sdk import MAX_QUORUM, check_prompt
from veriml.errors import InvalidPrompt, UserInputError
from veriml.gateway.problem import ApiError, bad_request, describe
from veriml.jobspec import (
    MAX_SEED,
    chat_input,
    check_chat_messages,
    check_embedding_texts,
    embeddings_input,
)
from veriml.models.manifest import Manifest

Kind = Literal["chat", "completion", "embeddings", "image"]

DEFAULT_SCHEME = "quorum"
DEFAULT_N = 3
KNOWN_SCHEMES = (*schemes.names(), "audit", "fingerprint", "training")  # known; not all served here
MAX_BODY_BYTES = 256 * 1024  # far above any input a shipped model takes (SmolLM2: 4 KiB of chat)

# Which model tasks answer which endpoint. A text-generation model (tiny-gpt) continues the chat's text.
ENDPOINT_TASKS: dict[Kind, tuple[str, ...]] = {
    "chat": ("chat", "text-generation"),
    "completion": ("text-generation", "chat"),
    "embeddings": ("embeddings",),
    "image": ("image-generation",),
}

# Accepted and checked but without effect on the job: the network decodes greedily unless `seed` is set.
_SAMPLING = ("temperature", "top_p")
_HARMLESS = ("user", "metadata", "store", "stream_options", "service_tier", "parallel_tool_calls")
_ZERO_PENALTIES = ("presence_penalty", "frequency_penalty")


@dataclass(frozen=True)
class ModelEntry:
    """A model this network serves: its manifest, on-chain price and how many nodes serve it."""

    name: str
    manifest: Manifest
    price_wei: int
    nodes: int

    @property
    def task(self) -> str:
        return self.manifest.task


@dataclass(frozen=True)
class Catalog:
    """What a request may ask for: the served models and verification schemes."""

    models: dict[str, ModelEntry]
    schemes: tuple[str, ...] = (DEFAULT_SCHEME,)


@dataclass(frozen=True)
class JobRequest:
    """One accepted request: what to run, on which model, verified how."""

    kind: Kind
    model: str
    task: str
    scheme: str = DEFAULT_SCHEME
    n: int = DEFAULT_N
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    texts: list[str] | None = None
    label: str | None = None
    max_new_tokens: int | None = None
    seed: int | None = None
    stream: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobRequest:
        return cls(**json.loads(text))


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400/413 saying why not."""
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body is {len(raw)} bytes; at most {MAX_BODY_BYTES}", code="body_too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise bad_request(f"request body is not UTF-8 (byte {e.start})", code="invalid_json") from None
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
        raise bad_request(f"request body is not valid JSON: {msg}", code="invalid_json") from None
    if not isinstance(obj, dict):
        raise bad_request(f"request body must be a JSON object, got {type(obj).__name__}", code="invalid_json")
    return obj


def parse(kind: Kind, body: dict[str, Any], catalog: Catalog) -> JobRequest:
    """A checked JobRequest for endpoint `kind`, or an ApiError naming the offending parameter."""
    allowed = {"model", "veriml", "seed", *_SAMPLING, *_HARMLESS, *_ZERO_PENALTIES, *_FIELDS[kind]}
    unknown = sorted(str(k) for k in body if k not in allowed)
    if unknown:
        raise bad_request(f"unrecognized request argument: {describe(unknown[0])}", unknown[0], "unknown_parameter")
    entry = _model(kind, body, catalog)
    scheme, n = _verification(body.get("veriml"), entry, catalog)
    _sampling(body, kind)
    seed = _int(body, "seed", 0, MAX_SEED)
    common = {"kind": kind, "model": entry.name, "task": entry.task, "scheme": scheme, "n": n, "seed": seed}
    m = entry.manifest
    try:
        if kind == "chat":
            messages = _messages(body.get("messages", _MISSING))
            limit = _int(body, "max_completion_tokens", 1, m.max_new_tokens)
            tokens = _int(body, "max_tokens", 1, m.max_new_tokens) if limit is None else limit
            _only_one(body)
            stream = _bool(body, "stream")
            req = JobRequest(**common, messages=messages, max_new_tokens=tokens, stream=stream)
        elif kind == "completion":
            prompt = body.get("prompt", _MISSING)
            if isinstance(prompt, list) and len(prompt) == 1:
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise bad_request("prompt must be a string (one prompt per request)", "prompt")
            _only_one(body)
            for flag in ("echo", "logprobs", "best_of", "suffix"):
                if body.get(flag) not in (None, False, 1) or (flag == "suffix" and body.get(flag)):
                    raise bad_request(f"{flag} is not supported by this gateway", flag, "unsupported_parameter")
            tokens = _int(body, "max_tokens", 1, m.max_new_tokens)
            req = JobRequest(**common, prompt=prompt, max_new_tokens=tokens, stream=_bool(body, "stream"))
        elif kind == "embeddings":
            texts = body.get("input", _MISSING)
            if isinstance(texts, str):
                texts = [texts]
            texts = check_embedding_texts(texts if texts is not _MISSING else None)
            fmt = body.get("encoding_format", "float")
            if fmt not in ("float", "base64"):
                raise bad_request("encoding_format must be 'float' or 'base64'", "encoding_format", "invalid_value")
            if "dimensions" in body:
                raise bad_request("dimensions is not supported: vectors are the model's own", "dimensions")
            req = JobRequest(**common, texts=texts, extra={"encoding_format": fmt})
        else:
            req = _image(body, entry, common)
        _check_input(req, m)
    except UserInputError as e:
        raise bad_request(
            str(e).encode("utf-8", "backslashreplace").decode(), _INPUT_PARAM[kind], "invalid_input"
        ) from None
    return req


_MISSING: Any = object()
_FIELDS: dict[Kind, tuple[str, ...]] = {
    "chat": ("messages", "max_tokens", "max_completion_tokens", "n", "stream", "stop", "logprobs", "response_format"),
    "completion": ("prompt", "max_tokens", "n", "stream", "stop", "echo", "logprobs", "best_of", "suffix"),
    "embeddings": ("input", "encoding_format", "dimensions"),
    "image": ("prompt", "n", "size", "response_format", "quality", "style"),
}
_INPUT_PARAM: dict[Kind, str] = {"chat": "messages", "completion": "prompt", "embeddings": "input", "image": "prompt"}


def _model(kind: Kind, body: dict[str, Any], catalog: Catalog) -> ModelEntry:
    name = body.get("model", _MISSING)
    if name is _MISSING:
        raise bad_request("you must provide a model parameter", "model", "missing_parameter")
    if not isinstance(name, str):
        raise bad_request(f"model must be a string, got {type(name).__name__}", "model")
    entry = catalog.models.get(name)
    if entry is None:
        known = ", ".join(sorted(catalog.models)) or "(none)"
        raise ApiError(404, f"the model {describe(name)} is not served here; served: {known}", param="model",
                       code="model_not_found", type="not_found_error")  # fmt: skip
    if entry.task not in ENDPOINT_TASKS[kind]:
        endpoint = {"chat": "chat completions", "completion": "completions", "embeddings": "embeddings",
                    "image": "image generations"}[kind]  # fmt: skip
        fits = sorted(n for n, e in catalog.models.items() if e.task in ENDPOINT_TASKS[kind])
        raise bad_request(
            f"model {name} serves {entry.task}, not {endpoint}; models that do: {', '.join(fits) or '(none)'}",
            "model",
            "model_not_supported",
        )
    if entry.nodes < 1:
        raise ApiError(503, f"no node serves {name} right now", "server_error", "model", "no_nodes")
    return entry


def _verification(obj: Any, entry: ModelEntry, catalog: Catalog) -> tuple[str, int]:
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise bad_request('veriml must be an object like {"scheme": "quorum", "n": 3}', "veriml")
    extra = sorted(str(k) for k in obj if k not in ("scheme", "n"))
    if extra:
        raise bad_request(
            f"unrecognized veriml option: {describe(extra[0])}", f"veriml.{extra[0]}", "unknown_parameter"
        )
    scheme = obj.get("scheme", DEFAULT_SCHEME)
    if not isinstance(scheme, str):
        raise bad_request("veriml.scheme must be a string", "veriml.scheme", "invalid_scheme")
    if scheme not in catalog.schemes:
        what = "is not served by this gateway" if scheme in KNOWN_SCHEMES else "is not a veriml scheme"
        raise bad_request(
            f"scheme {describe(scheme)} {what}; served: {', '.join(catalog.schemes)}", "veriml.scheme", "invalid_scheme"
        )
    n = obj.get("n", DEFAULT_N)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_QUORUM or n % 2 == 0:
        raise bad_request(
            f"veriml.n must be odd and in 1..{MAX_QUORUM}, got {describe(n)}", "veriml.n", "invalid_quorum"
        )
    if n > entry.nodes:
        raise bad_request(
            f"veriml.n = {n} but only {entry.nodes} node(s) serve {entry.name}", "veriml.n", "invalid_quorum"
        )
    return scheme, n


def _int(body: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise bad_request(f"{name} must be an integer in {lo}..{hi}, got {describe(v)}", name, "invalid_value")
    return v


def _bool(body: dict[str, Any], name: str) -> bool:
    v = body.get(name, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise bad_request(f"{name} must be a boolean, got {describe(v)}", name, "invalid_value")
    return v


def _number(body: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    v = body.get(name)
    if v is None:
        return None
    if not isinstance(v, int | float) or isinstance(v, bool) or not lo <= v <= hi:
        raise bad_request(f"{name} must be a number in {lo}..{hi}, got {describe(v)}", name, "invalid_value")
    return float(v)


def _sampling(body: dict[str, Any], kind: Kind) -> None:
    _number(body, "temperature", 0.0, 2.0)
    _number(body, "top_p", 0.0, 1.0)
    for name in _ZERO_PENALTIES:
        if _number(body, name, -2.0, 2.0) not in (None, 0.0):
            raise bad_request(
                f"{name} is not supported (the decoding is fixed by the model)", name, "unsupported_parameter"
            )
    for name in ("stop", "response_format") if kind != "image" else ("stop",):
        v = body.get(name)
        if v is not None and not (name == "response_format" and v == {"type": "text"}):
            raise bad_request(f"{name} is not supported by this gateway", name, "unsupported_parameter")
    if body.get("logprobs") not in (None, False):
        raise bad_request("logprobs is not supported by this gateway", "logprobs", "unsupported_parameter")


def _only_one(body: dict[str, Any]) -> None:
    if body.get("n") not in (None, 1) or isinstance(body.get("n"), bool):
        raise bad_request(f"n must be 1 (one verified answer per request), got {describe(body.get('n'))}", "n")


def _messages(obj: Any) -> list[dict[str, str]]:
    """OpenAI messages -> {role, content} strings; content parts of type text are joined."""
    if obj is _MISSING:
        raise bad_request("messages is required", "messages", "missing_parameter")
    if not isinstance(obj, list):
        raise bad_request(f"messages must be a list, got {type(obj).__name__}", "messages")
    out = []
    for i, m in enumerate(obj):
        if not isinstance(m, dict):
            raise bad_request(f"messages[{i}] must be an object", f"messages[{i}]")
        role, content = m.get("role"), m.get("content")
        role = "system" if role == "developer" else role
        if isinstance(content, list):
            parts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise bad_request(f"messages[{i}].content parts must be text parts", f"messages[{i}].content")
                parts.append(part["text"])
            content = "".join(parts)
        extra = set(m) - {"role", "content", "name"}
        if extra:
            raise bad_request(
                f"messages[{i}] has unsupported field {describe(sorted(map(str, extra))[0])}", f"messages[{i}]"
            )
        out.append({"role": role, "content": content})
    return check_chat_messages(out)


def _image(body: dict[str, Any], entry: ModelEntry, common: dict[str, Any]) -> JobRequest:
    label = body.get("prompt", _MISSING)
    classes = entry.manifest.architecture.get("classes", [])
    if not isinstance(label, str):
        raise bad_request("prompt must be a string: the class to draw", "prompt", "missing_parameter")
    label = label.strip().lower()
    if label not in classes:
        raise bad_request(f"{entry.name} draws one of {', '.join(classes)}; got {describe(label)}", "prompt")
    _only_one(body)
    size = body.get("size")
    side = entry.manifest.architecture.get("size", 64)
    if size is not None and size != f"{side}x{side}":
        raise bad_request(f"size must be {side}x{side} for {entry.name}", "size", "invalid_value")
    if body.get("response_format") not in (None, "b64_json"):
        raise bad_request("response_format must be b64_json (there is no URL host)", "response_format")
    for name in ("quality", "style"):
        if body.get(name) is not None:
            raise bad_request(f"{name} is not supported by {entry.name}", name, "unsupported_parameter")
    return JobRequest(**{**common, "seed": common["seed"] or 0}, label=label)


def flatten(messages: list[dict[str, str]]) -> str:
    """A chat as the prompt a text-generation model continues: the contents, one per line."""
    return "\n".join(m["content"] for m in messages)


def job_input(req: JobRequest) -> bytes:
    """The bytes the job's input blob will hold (what the SDK uploads)."""
    if req.kind == "embeddings":
        return embeddings_input(req.texts or [])
    if req.kind == "image":
        return (req.label or "").encode()
    if req.task == "chat":
        msgs = req.messages if req.messages is not None else [{"role": "user", "content": req.prompt or ""}]
        return chat_input(msgs)
    text = req.prompt if req.prompt is not None else flatten(req.messages or [])
    return text.encode("utf-8")


def _check_input(req: JobRequest, m: Manifest) -> None:
    try:
        data = job_input(req)
    except UnicodeEncodeError:
        raise InvalidPrompt("input is not valid UTF-8 (it holds unpaired surrogates)") from None
    check_prompt(data, m.max_prompt_bytes)
