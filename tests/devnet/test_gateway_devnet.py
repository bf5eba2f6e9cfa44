"""The slow tier: `veriml devnet up` with its gateway, driven by the official `openai` client.

The devnet runs as the user runs it (the CLI in its own process); the test reads the gateway's URL and
dev API key from what it prints, runs the README's three lines against it, then stops it with SIGINT
(Ctrl-C) or SIGTERM and checks that every process it started is gone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from openai import OpenAI

from veriml.gateway.database import Database

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
UP_TIMEOUT = 240.0


class Proc:
    """A process read from /proc (Linux), so the test needs no psutil."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cmdline = (Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0"))[:-1]

    def alive(self) -> bool:
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except FileNotFoundError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z"

    def kind(self) -> str:
        """anvil, or the `veriml` subcommand it runs."""
        cmd = self.cmdline
        if cmd and Path(cmd[0]).name == "anvil":
            return "anvil"
        return cmd[cmd.index("veriml.cli") + 1] if "veriml.cli" in cmd else " ".join(cmd[:2])


def descendants(pid: int) -> list[Proc]:
    parents: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
            parents.setdefault(ppid, []).append(int(d.name))
    out, todo = [], list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            out.append(Proc(child))
        except FileNotFoundError:
            continue
        todo += parents.get(child, [])
    return out


class DevnetUp:
    """`veriml devnet up` as a child process, with its printed gateway URL and dev API key."""

    def __init__(self, directory: Path, nodes: int) -> None:
        self.directory = directory
        args = ["devnet", "up", "--nodes", str(nodes), "--dir", str(directory), "--gateway-port", "0"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "veriml.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "80"},  # narrow on purpose: the URL and key must not be wrapped
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url, self.key = self._wait_for_key()
        self.children = descendants(self.proc.pid)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _wait_for_key(self) -> tuple[str, str]:
        deadline = time.monotonic() + UP_TIMEOUT
        while time.monotonic() < deadline:
            text = "\n".join(self.lines)
            url = re.search(r"gateway: (http://127\.0\.0\.1:\d+)/v1 ", text)
            key = re.search(r"dev API key: (vml_[0-9a-f]+_[0-9a-f]+)$", text, re.M)
            if url and key:
                return url.group(1), key.group(1)
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.kill()
        raise AssertionError("devnet up printed no gateway URL and key:\n" + "\n".join(self.lines[-40:]))

    def stop(self, sig: int) -> int:
        """Send `sig` to `veriml devnet up` alone; its exit code once it has stopped everything."""
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        for p in getattr(self, "children", []):
            if p.alive():
                os.kill(p.pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait(timeout=10)


def alive(procs: list[Proc]) -> list[str]:
    return [" ".join(p.cmdline[:5]) for p in procs if p.alive()]


def readme_lines() -> str:
    """The README's Python block that uses the openai client against the devnet's gateway."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    chosen = [b for b in blocks if "from openai import OpenAI" in b]
    assert len(chosen) == 1, "the README should show one openai-client block"
    return chosen[0]


def test_the_readme_lines_chat_verified_through_devnet_up_and_ctrl_c_stops_it_all(tmp_path):
    net = DevnetUp(tmp_path / "devnet", nodes=3)
    try:
        assert {p.kind() for p in net.children} == {"anvil", "serve-blobs", "node", "gateway"}
        code = readme_lines()
        assert code.count("\n") == 3, "three lines"
        code = code.replace("http://127.0.0.1:8700", net.url).replace('"vml_..."', repr(net.key))
        scope: dict = {}
        exec(code, scope)  # noqa: S102 - the README's own lines, run as a user would paste them
        r = scope["r"]
        v = r.veriml
        assert v["status"] == "verified", v
        assert v["n"] == 3 and len(v["agree"]) == 3 and v["slashed"] == []
        assert r.choices[0].message.content and r.choices[0].finish_reason in ("stop", "length")
        assert v["txs"]["submit"].startswith("0x") and v["job_id"] >= 1

        # The same, with a client built here (not from the README): one request, one job, paid once.
        client = OpenAI(base_url=f"{net.url}/v1", api_key=net.key, max_retries=0)
        again = client.chat.completions.create(
            model="tiny-gpt",
            messages=[{"role": "user", "content": "A class definition"}],
            max_tokens=8,
            extra_body={"veriml": {"n": 1}},
        )
        assert again.veriml["status"] == "verified" and again.veriml["n"] == 1
        assert again.veriml["job_id"] != v["job_id"]
        info = json.loads((net.directory / "devnet.json").read_text())
        assert info["gateway_url"] == net.url and info["api_key"] == net.key

        assert net.stop(signal.SIGINT) == 0
        assert "devnet stopped" in net.lines[-1]
        assert alive(net.children) == []
        db = Database(net.directory / "gateway.sqlite")
        try:
            states = {r["state"]: r["c"] for r in db.query("SELECT state, COUNT(*) c FROM requests GROUP BY state")}
        finally:
            db.close()
        assert states == {"settled": 2}
    finally:
        if net.proc.poll() is None:
            net.kill()


def test_sigterm_stops_the_gateway_nodes_blobs_and_anvil(tmp_path):
    net = DevnetUp(tmp_path / "devnet", nodes=1)
    try:
        assert {p.kind() for p in net.children} == {"anvil", "serve-blobs", "node", "gateway"}
        assert net.stop(signal.SIGTERM) == 0
        assert alive(net.children) == []
    finally:
        if net.proc.poll() is None:
            net.kill()
