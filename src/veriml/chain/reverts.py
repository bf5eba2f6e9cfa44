"""One exception class per custom error our contracts declare, so Python matches reverts by type.

    try:
        quorum.assign(account, job_id)
    except reverts.WrongStatus:  # another party assigned it first
        ...

Each class subclasses `ContractRevert` and is made on first use from the error's name; its `values` are
the decoded arguments and its `reason` reads `Name(arg, ...)`. Names are shared across contracts (every
scheme's `WrongStatus` is the same class), which is what callers want: the rule, not the contract.
"""

from __future__ import annotations

import functools
from typing import Any

from veriml.errors import ContractRevert


class CustomError(ContractRevert):
    """A revert with a custom error from one of our contracts."""

    error = ""

    def __init__(self, values: tuple[Any, ...] = (), tx: str | None = None) -> None:
        self.values = tuple(values)
        shown = ", ".join("0x" + v.hex() if isinstance(v, bytes) else str(v) for v in self.values)
        super().__init__(f"{self.error}({shown})", tx=tx)


@functools.cache
def error_class(name: str) -> type[CustomError]:
    """The exception class for custom error `name` (made once)."""
    if not name.isidentifier():
        raise ValueError(f"not an error name: {name!r}")
    return type(name, (CustomError,), {"error": name, "__doc__": f"The contracts' custom error {name}."})


def __getattr__(name: str) -> type[CustomError]:
    if name.startswith("_") or not name[:1].isupper():
        raise AttributeError(name)
    return error_class(name)
