"""Settled jobs -> OpenAI response bodies, each with the `veriml` report of how it was verified.

Pure functions over a `Settlement` (what the sequencer recorded when the chain settled the job).
A job the chain did not verify has no answer: it becomes an error (`unverified`), never content.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from typing import Any

from veriml.gateway.problem import VERIFICATION, ApiError, bad_request
from veriml.gateway.request import JobRequest


@dataclass(frozen=True)
class Settlement:
    """A request's end: the `veriml` report, the verified text (if any) and the output document."""

    request_id: str
    created: int
    veriml: dict[str, Any]
    text: str | None
    document: bytes | None

    @property
    def status(self) -> str:
        return str(self.veriml.get("status"))


def unverified(s: Settlement) -> ApiError | None:
    """The error to answer instead of content when the job did not end with a verified output."""
    v = s.veriml
    if v.get("status") == "verified" and v.get("error"):
        e = bad_request(f"the network verified a refusal of this job: {v['error']}", code="job_refused")
        e.veriml = v
        return e
    if v.get("status") == "verified":
        return None
    if v.get("status") == "failed":
        return ApiError(v.get("http_status", 503), str(v.get("reason")), "server_error", code="not_submitted", veriml=v)
    why = v.get("refund_reason") or ("no strict majority of nodes agreed" if v.get("status") == "disputed" else "")
    msg = f"job {v.get('job_id')} ended {v.get('status')} ({why}); refunded {v.get('refund')} wei"
    return ApiError(502, msg, VERIFICATION, code=f"job_{v.get('status')}", veriml=v)


def usage(req: JobRequest, s: Settlement) -> dict[str, int]:
    """Token counts: the prompt's are not known to the gateway (the nodes tokenize), so they are 0."""
    n = len(_document(s).get("tokens", [])) if req.kind in ("chat", "completion") else 0
    return {"prompt_tokens": 0, "completion_tokens": n, "total_tokens": n}


def _document(s: Settlement) -> dict[str, Any]:
    if not s.document or s.document[:1] != b"{":
        return {}
    try:
        obj = json.loads(s.document)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def chat_completion(req: JobRequest, s: Settlement) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{s.request_id}",
        "object": "chat.completion",
        "created": s.created,
        "model": req.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": s.text or "", "refusal": None},
                "finish_reason": _finish(req, s),
                "logprobs": None,
            }
        ],
        "usage": usage(req, s),
        "system_fingerprint": s.veriml.get("output_digest"),
        "veriml": s.veriml,
    }


def completion(req: JobRequest, s: Settlement) -> dict[str, Any]:
    return {
        "id": f"cmpl-{s.request_id}",
        "object": "text_completion",
        "created": s.created,
        "model": req.model,
        "choices": [{"index": 0, "text": s.text or "", "finish_reason": _finish(req, s), "logprobs": None}],
        "usage": usage(req, s),
        "veriml": s.veriml,
    }


def embeddings(req: JobRequest, s: Settlement) -> dict[str, Any]:
    vectors = _document(s).get("vectors", [])
    if req.extra.get("encoding_format") == "base64":  # what the openai client asks for: float32, little-endian
        out = [base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode("ascii") for v in vectors]
    else:
        out = vectors
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(out)],
        "model": req.model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
        "veriml": s.veriml,
    }


def images(req: JobRequest, s: Settlement) -> dict[str, Any]:
    png = s.document or b""
    return {
        "created": s.created,
        "data": [{"b64_json": base64.b64encode(png).decode("ascii"), "revised_prompt": req.label}],
        "veriml": s.veriml,
    }


def _finish(req: JobRequest, s: Settlement) -> str:
    """`length` when the job generated as many tokens as it was allowed, else `stop`."""
    n = len(_document(s).get("tokens", []))
    return "length" if req.max_new_tokens is not None and n >= req.max_new_tokens else "stop"


RENDER = {"chat": chat_completion, "completion": completion, "embeddings": embeddings, "image": images}


# ---- streaming (server-sent events) ----
def chunk(req: JobRequest, request_id: str, created: int, delta: dict[str, Any] | None, finish: str | None,
          veriml: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """One `chat.completion.chunk` (or `text_completion` for /v1/completions). A chunk with no delta
    carries `choices: []`: a progress report about the job, with no content."""
    if req.kind == "chat":
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        obj = "chat.completion.chunk"
        prefix = "chatcmpl"
    else:
        text = None if delta is None else delta.get("content", "")
        choices = [] if text is None else [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]
        obj = "text_completion"
        prefix = "cmpl"
    return {"id": f"{prefix}-{request_id}", "object": obj, "created": created, "model": req.model,
            "choices": choices, "veriml": veriml}  # fmt: skip


def sse(obj: dict[str, Any] | str) -> bytes:
    """One server-sent event (`data: ...` and a blank line); ASCII JSON so no byte can break the frame."""
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return f"data: {data}\n\n".encode("ascii")
