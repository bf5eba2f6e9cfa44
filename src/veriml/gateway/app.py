"""The gateway's HTTP face: an OpenAI-compatible API over verified jobs, the playground and the explorer.

- `GET /v1/models`, `POST /v1/chat/completions` (`stream: true`: server-sent events), `POST /v1/completions`,
  `POST /v1/embeddings`, `POST /v1/images/generations`: OpenAI's shapes plus a `veriml` report.
- `GET /v1/veriml/requests/{id}`: a request's state or answer (after a dropped connection or a restart).
- `GET /v1/veriml/usage`: the calling key's limits and usage.
- `GET /v1/veriml/jobs/{job_id}`: any market job, checked (the non-custodial path: submit and pay with
  your own account through the SDK, read the verified result here).
- `GET /v1/veriml/explorer/...`: the explorer's data; `/` the playground, `/explorer` the explorer.

Streams: before the chain settles a job, chunks carry no content (`choices: []`) and a `veriml` progress
report (queued, submitted, assigned, committing, revealing); the answer comes in one content chunk only
after settlement, already checked against the agreed digest; an unverified end is an `error` event.
Every failure is an OpenAI error object; anything unexpected is logged and answered 503, never 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from veriml.errors import VerimlError
from veriml.gateway import explorer, response
from veriml.gateway.problem import NOT_FOUND, SERVER, ApiError, bad_request, from_veriml
from veriml.gateway.request import MAX_BODY_BYTES, Kind, parse, parse_body
from veriml.gateway.sequencer import RequestRow, Sequencer

log = logging.getLogger("veriml.gateway")
WEB_DIR = Path(__file__).resolve().parent / "web"
WEB_FILES = {"app.js", "explorer.js", "common.js", "style.css"}


class JSON(JSONResponse):
    """JSON with ASCII escapes, so no client-supplied string (a lone surrogate) can fail to encode."""

    def render(self, content: Any) -> bytes:
        import json

        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def error_response(e: ApiError) -> JSON:
    headers = {"Retry-After": "60"} if e.status == 429 else None
    return JSON(e.body(), status_code=e.status, headers=headers)


def as_api_error(e: BaseException) -> ApiError:
    if isinstance(e, ApiError):
        return e
    if isinstance(e, VerimlError):
        return from_veriml(e)
    log.error("unexpected error answering a request", exc_info=e)
    return ApiError(503, f"the gateway failed unexpectedly ({type(e).__name__}); try again", SERVER,
                    code="internal_error")  # fmt: skip


class Notifier:
    """Wakes the HTTP coroutines waiting on a request when the sequencer's worker changes it."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waiting: dict[str, set[asyncio.Event]] = defaultdict(set)

    def changed(self, request_id: str) -> None:  # called from the worker thread
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._fire, request_id)

    def _fire(self, request_id: str) -> None:
        for ev in self.waiting.get(request_id, ()):
            ev.set()

    async def wait(self, request_id: str, timeout: float) -> None:
        ev = asyncio.Event()
        self.waiting[request_id].add(ev)
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            self.waiting[request_id].discard(ev)
            if not self.waiting[request_id]:
                self.waiting.pop(request_id, None)


async def read_body(request: Request) -> bytes:
    """The body, refused (413) past MAX_BODY_BYTES before or while reading it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body is {declared} bytes; at most {MAX_BODY_BYTES}", code="body_too_large")
    buf = bytearray()
    async for part in request.stream():
        buf += part
        if len(buf) > MAX_BODY_BYTES:
            raise ApiError(413, f"request body exceeds {MAX_BODY_BYTES} bytes", code="body_too_large")
    return bytes(buf)


def create_app(seq: Sequencer, wait_timeout: float = 600.0) -> FastAPI:
    """The gateway app over a started (or about to be started) sequencer."""
    notifier = Notifier()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        notifier.loop = asyncio.get_running_loop()
        seq.listeners.append(notifier.changed)
        yield
        seq.listeners.remove(notifier.changed)
        notifier.loop = None

    app = FastAPI(title="veriml gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def never_500(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        try:
            return await call_next(request)
        except Exception as e:  # noqa: BLE001 - the last line: an error object, not a bare 500
            return error_response(as_api_error(e))

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> Response:
        return error_response(e)

    @app.exception_handler(VerimlError)
    async def _veriml_error(request: Request, e: VerimlError) -> Response:
        return error_response(from_veriml(e))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> Response:
        kind = NOT_FOUND if e.status_code == 404 else "invalid_request_error"
        return error_response(ApiError(e.status_code, str(e.detail), kind))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError) -> Response:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("path", "query", "body"))
        return error_response(bad_request(f"{where or 'request'}: {first.get('msg', 'invalid')}", where or None))

    def auth(request: Request):  # noqa: ANN202
        return seq.keys.authenticate(request.headers.get("authorization"))

    async def wait_done(request_id: str, deadline: float) -> RequestRow:
        while True:
            row = seq.get(request_id)
            if row is None:
                raise ApiError(503, f"request {request_id} vanished from the queue", SERVER)
            if row.done:
                return row
            left = deadline - time.monotonic()
            if left <= 0:
                raise ApiError(504, f"request {request_id} is still {row.state} after {wait_timeout:.0f}s; fetch it "
                               f"later from /v1/veriml/requests/{request_id}", SERVER, code="timeout",
                               veriml={"request_id": request_id, "status": row.state})  # fmt: skip
            await notifier.wait(request_id, min(left, 1.0))

    async def job_endpoint(kind: Kind, request: Request) -> Response:
        key = auth(request)
        body = parse_body(await read_body(request))
        req = parse(kind, body, seq.catalog)
        request_id = seq.accept(key, req, request.headers.get("idempotency-key"))
        deadline = time.monotonic() + wait_timeout
        if req.stream:
            return StreamingResponse(stream(request_id, deadline), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Request-Id": request_id})  # fmt: skip
        row = await wait_done(request_id, deadline)
        return answer(row)

    def answer(row: RequestRow) -> Response:
        s = row.settlement
        assert s is not None
        err = response.unverified(s)
        if err is not None:
            return error_response(err)
        return JSON(response.RENDER[row.request.kind](row.request, s), headers={"X-Request-Id": row.id})

    async def stream(request_id: str, deadline: float) -> AsyncIterator[bytes]:
        try:
            row = seq.get(request_id)
            assert row is not None
            req, created = row.request, int(row.created)
            last: Any = None
            while not row.done:
                progress = row.progress or {"request_id": request_id, "status": row.state, "final": False}
                if progress != last:
                    yield response.sse(response.chunk(req, request_id, created, None, None, progress))
                    last = progress
                if time.monotonic() > deadline:
                    raise ApiError(504, f"request {request_id} still {row.state}; fetch it later from "
                                   f"/v1/veriml/requests/{request_id}", SERVER, code="timeout")  # fmt: skip
                await notifier.wait(request_id, 1.0)
                row = seq.get(request_id)
                assert row is not None
            s = row.settlement
            assert s is not None
            err = response.unverified(s)
            if err is not None:
                yield response.sse(err.body())
            else:
                content = (s.text or "") if req.kind in ("chat", "completion") else ""
                delta = {"role": "assistant", "content": content} if req.kind == "chat" else {"content": content}
                yield response.sse(response.chunk(req, request_id, created, delta, None, s.veriml))
                finish = response._finish(req, s)
                end = {} if req.kind == "chat" else {"content": ""}
                yield response.sse(response.chunk(req, request_id, created, end, finish, s.veriml))
        except Exception as e:  # noqa: BLE001 - headers are sent: the error travels as an event
            yield response.sse(as_api_error(e).body())
        yield response.sse("[DONE]")

    # ---- OpenAI endpoints ----
    @app.get("/v1/models")
    def list_models(request: Request) -> Response:
        auth(request)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "veriml",
             "veriml": {"task": e.task, "policy": e.manifest.policy, "price_wei": str(e.price_wei), "nodes": e.nodes,
                        "model_id": "0x" + e.manifest.model_id().hex(), "schemes": list(seq.catalog.schemes)}}
            for name, e in sorted(seq.catalog.models.items())
        ]  # fmt: skip
        return JSON({"object": "list", "data": data})

    @app.get("/v1/models/{name}")
    def get_model(name: str, request: Request) -> Response:
        auth(request)
        e = seq.catalog.models.get(name)
        if e is None:
            raise ApiError(404, f"the model {name[:80]!r} is not served here", NOT_FOUND, "model", "model_not_found")
        return JSON({"id": name, "object": "model", "created": 0, "owned_by": "veriml"})

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await job_endpoint("chat", request)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await job_endpoint("completion", request)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        return await job_endpoint("embeddings", request)

    @app.post("/v1/images/generations")
    async def images(request: Request) -> Response:
        return await job_endpoint("image", request)

    # ---- veriml endpoints ----
    @app.get("/v1/veriml/requests/{request_id}")
    def get_request(request_id: str, request: Request) -> Response:
        key = auth(request)
        row = seq.get(request_id)
        if row is None or row.key_id != key.id:
            raise ApiError(404, f"no request {request_id[:40]!r} for this key", NOT_FOUND, code="unknown_request")
        if not row.done:
            return JSON({"id": row.id, "state": row.state, "veriml": row.progress}, status_code=202)
        return answer(row)

    @app.get("/v1/veriml/usage")
    def usage(request: Request) -> Response:
        key = auth(request)
        return JSON(seq.keys.get(key.id).to_json())

    @app.get("/v1/veriml/jobs/{job_id}")
    def market_job(job_id: int) -> Response:
        return JSON(seq.job_result(job_id))

    @app.get("/v1/veriml/explorer/jobs")
    def explorer_jobs(limit: int = 50) -> Response:
        return JSON(explorer.jobs(seq, limit))

    @app.get("/v1/veriml/explorer/jobs/{job_id}")
    def explorer_job(job_id: int) -> Response:
        return JSON(explorer.job(seq, job_id))

    @app.get("/v1/veriml/explorer/nodes")
    def explorer_nodes() -> Response:
        return JSON(explorer.nodes(seq))

    @app.get("/v1/veriml/explorer/nodes/{address}")
    def explorer_node(address: str) -> Response:
        return JSON(explorer.node(seq, address))

    @app.get("/v1/veriml/explorer/models")
    def explorer_models() -> Response:
        return JSON(explorer.models(seq))

    @app.get("/v1/veriml/explorer/models/{name}")
    def explorer_model(name: str) -> Response:
        return JSON(explorer.model(seq, name))

    @app.get("/health")
    def health() -> Response:
        return JSON({"status": "ok", "requests": seq.counts(), "head": seq.index.cursor})

    # ---- pages ----
    @app.get("/")
    def playground() -> Response:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    @app.get("/explorer")
    def explorer_page() -> Response:
        return FileResponse(WEB_DIR / "explorer.html", media_type="text/html")

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in WEB_FILES:
            raise ApiError(404, "no such file", NOT_FOUND)
        media = "text/css" if name.endswith(".css") else "text/javascript"
        return FileResponse(WEB_DIR / name, media_type=media)

    return app
