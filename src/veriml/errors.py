"""The exceptions veriml raises, one tree.

    VerimlError
    ├── UserInputError          the caller asked for something malformed or impossible
    │   ├── UnknownModel        no model with that name or id is registered / shipped
    │   ├── InvalidPrompt       empty, oversized or undecodable input
    │   ├── InvalidQuorum       n is even, zero or above the contract's maximum
    │   ├── JobNotSettled       a result asked for before the chain settled the job (also a ValueError)
    │   ├── FeeTooLow           the offered fee is below n x the model's price
    │   ├── InvalidBlobKey      a blob key is not 64 lowercase hex chars, or not the hash of its body
    │   └── BlobTooLarge        a blob exceeds the store's size limit
    ├── ConfigError             a setting, file or environment is wrong (bad RPC URL, missing artifact)
    ├── ChainError              the chain said no or could not be reached
    │   ├── ContractRevert      a transaction or call reverted; `.reason` keeps the revert string
    │   │   └── CustomError     one subclass per custom error of our contracts (veriml.chain.reverts)
    │   └── ChainUnavailable    the backend could not be started or reached
    ├── NetworkError            a payload could not be moved between processes
    │   └── BlobNotFound        no blob under that key
    └── VerificationError       bytes we were handed do not match their commitment
        └── BlobHashMismatch    a blob's bytes do not hash to its key

Untrusted results (a node's wrong answer) are verdicts, not exceptions: see `veriml.verify`.
"""

from __future__ import annotations


class VerimlError(Exception):
    """Root of every error veriml raises on purpose."""


class UserInputError(VerimlError):
    """The caller asked for something malformed or impossible."""


class UnknownModel(UserInputError):
    """Raised when a model name or id is neither shipped nor registered."""


class InvalidPrompt(UserInputError):
    """Raised when a prompt is empty, too long or not valid UTF-8."""


class JobNotSettled(UserInputError, ValueError):
    """The job's result was asked for before the chain settled it."""


class InvalidQuorum(UserInputError):
    """Raised when a quorum size is even, zero or above the maximum."""


class FeeTooLow(UserInputError):
    """Raised when the fee offered does not cover n x the model's price."""


class InvalidBlobKey(UserInputError):
    """Raised when a blob key is not 64 lowercase hex chars, or does not hash-match the body put under it."""


class BlobTooLarge(UserInputError):
    """Raised when a blob is larger than the store's size limit (`MAX_BLOB_BYTES`)."""


class ConfigError(VerimlError):
    """Raised when configuration (flags, files, environment) is wrong."""


class ChainError(VerimlError):
    """Raised when the chain refuses a transaction or cannot be reached."""


class ContractRevert(ChainError):
    """Raised when a transaction or call reverts; `reason` is the contract's revert string (for a custom
    error `Name(args)`, raised as its own subclass from `veriml.chain.reverts`)."""

    error: str = ""  # the custom error's name, "" for a revert string
    values: tuple = ()

    def __init__(self, reason: str, tx: str | None = None) -> None:
        super().__init__(f"reverted: {reason}")
        self.reason = reason
        self.tx = tx


class ChainUnavailable(ChainError):
    """Raised when a chain backend cannot be started or reached."""


class NetworkError(VerimlError):
    """Raised when a payload cannot be moved between processes."""


class BlobNotFound(NetworkError):
    """Raised when no blob is stored under the requested key."""


class VerificationError(VerimlError):
    """Raised when bytes handed to us do not match the commitment they came with."""


class BlobHashMismatch(VerificationError):
    """Raised when a fetched blob's bytes do not hash to its key."""
