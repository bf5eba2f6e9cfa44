"""The gateway's refusals, in OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}`.

Every way a request can fail ends here as an `ApiError` with an HTTP status, so a client sees a typed,
specific reason and the server never answers a bare 500.
"""

from __future__ import annotations

from typing import Any

from veriml.errors import (
    ChainError,
    FeeTooLow,
    InvalidPrompt,
    InvalidQuorum,
    NetworkError,
    UnknownModel,
    UserInputError,
    VerificationError,
    VerimlError,
)
from veriml.jobspec import short

INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
RATE_LIMIT = "rate_limit_error"  # a key's per-minute limit
INSUFFICIENT_QUOTA = "insufficient_quota"  # a key's spend limit
NOT_FOUND = "not_found_error"
SERVER = "server_error"  # the network (chain, nodes, blob store) failed us
VERIFICATION = "verification_error"  # the job settled without a verified answer


class ApiError(VerimlError):
    """Raised to answer a request with an OpenAI-style error object and an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = INVALID_REQUEST,  # noqa: A002 (OpenAI's field name)
        param: str | None = None,
        code: str | None = None,
        veriml: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.veriml = veriml

    def body(self) -> dict[str, Any]:
        """The JSON body: OpenAI's error object, plus the job's `veriml` report when a job ran."""
        error: dict[str, Any] = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        out: dict[str, Any] = {"error": error}
        if self.veriml is not None:
            out["veriml"] = self.veriml
        return out


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, INVALID_REQUEST, param, code)


def describe(value: Any) -> str:
    """A short, printable, ASCII-safe rendering of a client-supplied value for an error message."""
    return short(value).encode("ascii", "backslashreplace").decode("ascii")


def from_veriml(e: VerimlError, param: str | None = None) -> ApiError:
    """Our exception tree as HTTP: user input 4xx, the network 502/503, a broken promise 502."""
    message = str(e).encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(e, ApiError):
        return e
    if isinstance(e, UnknownModel):
        return ApiError(404, message, NOT_FOUND, param or "model", "model_not_found")
    if isinstance(e, InvalidQuorum):
        return ApiError(400, message, INVALID_REQUEST, "veriml.n", "invalid_quorum")
    if isinstance(e, FeeTooLow):
        return ApiError(400, message, INVALID_REQUEST, "veriml.fee", "fee_too_low")
    if isinstance(e, InvalidPrompt):
        return ApiError(400, message, INVALID_REQUEST, param, "invalid_input")
    if isinstance(e, UserInputError):
        return ApiError(400, message, INVALID_REQUEST, param)
    if isinstance(e, ChainError):
        return ApiError(503, f"the chain refused or could not be reached: {message}", SERVER, code="chain_error")
    if isinstance(e, VerificationError):
        return ApiError(502, f"no node served the verified output: {message}", VERIFICATION, code="output_unavailable")
    if isinstance(e, NetworkError):
        return ApiError(502, f"the network failed: {message}", SERVER, code="network_error")
    return ApiError(503, f"the gateway could not serve this request: {message}", SERVER, code="unavailable")
