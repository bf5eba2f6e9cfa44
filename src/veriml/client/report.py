"""Printing a job's verification report for people."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from veriml.client.sdk import JobResult


def print_result(console: Console, r: JobResult) -> None:
    """The verified output, who agreed, what it cost, and the transactions to look up."""
    colour = {"verified": "green"}.get(r.status, "yellow")
    console.print(f"job {r.job_id} · model {r.model} · {r.scheme} n={r.n} · [{colour}]{r.status}[/]")
    if r.output is not None:
        console.print(f"[bold]output[/]: {r.output}")
        console.print(f"digest {r.output_digest}, checked against the bytes fetched from a winning node")
    if r.error is not None:
        console.print(f"[yellow]the quorum agreed the job was invalid[/]: {r.error}")
    if r.refund_reason:
        console.print(f"[yellow]refunded[/]: {r.refund_reason}")
    t = Table(show_header=True)
    for col in ("node", "committed", "revealed", "agreed", "slashed"):
        t.add_column(col)
    for a in r.assigned:
        t.add_row(a, *("yes" if a in s else "no" for s in (r.committed, r.revealed, r.agree, r.slashed)))
    console.print(t)
    console.print(f"fee {r.fee} wei: paid {r.fee_paid}, refunded {r.refund}")
    for label, tx in r.txs.items():
        console.print(f"  {label} tx {tx}")
