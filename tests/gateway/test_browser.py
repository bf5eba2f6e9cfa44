"""The playground and the explorer in a real browser: Debian's chromium, driven by playwright.

The gateway runs on the in-process harness (embedded chain, five staked nodes, one of which answers
tiny-gpt wrongly, so a quorum of five slashes it). A user types a prompt in the playground, picks the
scheme and n, watches the verification arrive and then the answer; opens the job in the explorer and
reads its timeline of chain events, then a node page and a model page. Every step leaves a screenshot
in test-artifacts/browser/. Run with `make test-browser` (chromium from `make browser-deps`).
"""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from veriml.gateway.harness import LocalGateway
from veriml.sim.faults import Fault
from veriml.sim.network import NodeSpec

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
# Headless in a container, offline: no sandbox (root), no GPU, nothing that phones home; /dev/shm is
# often 64 MiB in CI containers, too small for chromium's shared memory.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]  # fmt: skip
CHEATER = 4  # index of the node that answers tiny-gpt jobs wrongly
PROMPT = "The for statement"
TX = re.compile(r"0x[0-9a-f]{64}")

# Records, in the page itself, every state the verification panel and the answer pass through, so the
# test can tell that progress arrived live, before the answer, and not all at once at the end.
RECORDER = """
window.__seen = [];
new MutationObserver(() => {
  const p = document.querySelector('#progress'), a = document.querySelector('#answer');
  if (p && a) window.__seen.push({progress: p.innerText, answer: a.innerText, cls: a.className});
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


@pytest.fixture(scope="module")
def gw():
    specs = [NodeSpec() for _ in range(4)] + [NodeSpec(Fault.WRONG_OUTPUT)]
    with LocalGateway.start(specs, ("tiny-gpt",), wait_timeout=120) as g:
        yield g
        assert g.seq is not None and g.seq.errors == 0


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("no /usr/bin/chromium: run `make browser-deps`")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def errors() -> list[str]:
    """What went wrong in the page: script errors, console errors, HTTP responses >= 400."""
    return []


@pytest.fixture
def page(browser, errors):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    pg.set_default_timeout(60_000)
    yield pg
    ctx.close()
    assert errors == [], errors


@contextmanager
def nodes_stepped(gw, pause: float = 0.0, gate: threading.Event | None = None):
    """Step the harness's nodes only once `gate` is set, `pause` seconds a round: the chain moves slowly
    enough for a person (and a screenshot) to see each stage."""
    stepper = gw.seq.between

    def between() -> None:
        if gate is None or gate.is_set():
            time.sleep(pause)
            stepper()

    gw.seq.between = between
    try:
        yield
    finally:
        gw.seq.between = stepper


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_playground_to_explorer(gw, page):
    key = gw.create_key(label="browser")
    page.add_init_script(RECORDER)
    page.goto(f"{gw.url}/#key={key}")
    page.wait_for_selector("#model option[value='tiny-gpt']", state="attached")
    page.select_option("#scheme", "quorum")
    page.select_option("#n", "5")
    page.fill("#max-tokens", "16")
    page.fill("#prompt", PROMPT)
    assert page.inner_text("#fee") == "fee: 5 x 0.001 ETH = 0.005 ETH escrowed"
    shot(page, "1-playground-ready")
    with nodes_stepped(gw, pause=0.4):
        page.click("#send")
        page.wait_for_selector("#nodes-table")
        shot(page, "2-playground-in-flight")
        page.wait_for_selector("#report-table")
    shot(page, "3-playground-verified")

    # The answer: what the model itself says, shown only with the verified status.
    with gw.seq.lock:
        ref = next(m for m in gw.net.models if m.manifest.name == "tiny-gpt").run(PROMPT.encode(), 16, None)
    expected = bytes(t for t in ref.tokens if t < 256).decode("utf-8", "replace")
    assert page.inner_text("#answer") == expected
    assert page.inner_text("#answer-status") == "verified"

    # Live: the panel went through the job's states (submitted, assigned with the nodes drawn, ...) while
    # the answer still waited; the answer's text only ever appeared next to a verified status.
    seen = page.evaluate("window.__seen")
    waiting = [s for s in seen if s["cls"] == "muted" and s["answer"].startswith("waiting")]
    assert any("nodes drawn" in s["progress"] for s in waiting)
    statuses = [re.search(r"status: (\w+)", s["progress"]) for s in waiting]
    order = list(dict.fromkeys(m.group(1) for m in statuses if m))
    assert len(order) >= 2 and "assigned" in order and "verified" not in order, order
    assert any("waiting" in s["progress"] for s in waiting)  # drawn nodes shown before they had all answered
    shown = [s for s in seen if s["cls"] == ""]  # the answer's text on screen (not a placeholder)
    assert shown and all(s["answer"] == expected and "status: verified" in s["progress"] for s in shown)

    # The report: five drawn, each committed and revealed on chain, four agreed, the cheater slashed.
    cheater = gw.net.nodes[CHEATER].address
    progress = page.inner_text("#progress")
    assert "commits: 5 / 5" in progress and "reveals: 5 / 5" in progress
    rows = page.locator("#nodes-table tr[data-node]")
    assert rows.count() == 5
    verdicts = {rows.nth(i).get_attribute("data-node"): rows.nth(i).locator(".verdict").inner_text() for i in range(5)}
    assert verdicts.pop(cheater) == "slashed" and set(verdicts.values()) == {"agreed, paid"}
    assert page.locator("#nodes-table td:has-text('waiting')").count() == 0
    slashed = page.inner_text("#report-slashed")
    assert slashed.count("0x") == 1 and cheater[:10] in slashed
    agree = page.inner_text("#report-agree")
    assert agree.count("0x") == 4 and cheater[:10] not in agree
    report = page.inner_text("#report-table")
    assert "quorum, n = 5" in report and "escrowed" in page.inner_text("#report-fee")

    page.click("#explorer-link")
    page.wait_for_url(re.compile(r"/explorer#/job/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    page.wait_for_selector("#timeline tr >> text=JobFinalized")
    shot(page, "4-explorer-job")
    data = httpx.get(f"{gw.url}/v1/veriml/explorer/jobs/{job_id}").json()
    rows = page.locator("#timeline tr").all_inner_texts()[1:]
    events = [r.split("\t")[1] for r in rows]
    assert events[0] == "JobSubmitted" and "JobAssigned" in events and "JobFinalized" in events
    assert events.count("Committed") == 5 and events.count("Revealed") == 5
    page_txs = TX.findall(page.inner_text("#timeline"))
    assert page_txs == [e["tx"] for e in data["timeline"]] and len(page_txs) == len(rows)
    for row, tx in zip(rows, page_txs, strict=True):  # each a mined transaction, in the block shown
        receipt = gw.net.chain.w3.eth.get_transaction_receipt(tx)
        assert receipt.status == 1 and receipt.blockNumber == int(row.split("\t")[0])
    assert page.inner_text("#job-output") == expected

    # A node page: the slashed node's stake, its jobs and its slash.
    page.click(f"#view a[href='#/node/{cheater}'] >> nth=0")
    page.wait_for_selector(f"h2:has-text('{cheater}')")
    shot(page, "5-explorer-node")
    node = page.inner_text("#view")
    assert "slashes\t1" in node or "slashes\n1" in node

    # A model page: its manifest, weights root, policy and verifier.
    page.goto(f"{gw.url}/explorer#/model/tiny-gpt")
    page.wait_for_selector("h2:has-text('Model tiny-gpt')")
    shot(page, "6-explorer-model")
    model = page.inner_text("#view")
    for word in ("weights root", "policy", "verifier", "Manifest"):
        assert word in model

    # The node list: every staked node, the cheater with its slash.
    page.click("header a[href='#/nodes']")
    page.wait_for_selector(f"#nodes tr:has-text('{cheater[:10]}')")
    shot(page, "7-explorer-nodes")
    assert page.locator("#nodes tr").count() == 1 + len(gw.net.nodes)


def test_explorer_updates_live(gw, page):
    """A job submitted while the explorer is open appears, and moves to verified, without a reload."""
    key = gw.create_key(label="live")
    page.goto(f"{gw.url}/explorer")
    page.wait_for_selector("#jobs")
    page.evaluate("window.__same_page = true")
    before = httpx.get(f"{gw.url}/v1/veriml/explorer/jobs").json()["jobs"]
    job_id = 1 + max((j["job_id"] for j in before), default=0)
    gate = threading.Event()
    answers: list[httpx.Response] = []
    body = {"model": "tiny-gpt", "prompt": "The while statement", "max_tokens": 8}  # no veriml: the default
    post = threading.Thread(target=lambda: answers.append(httpx.post(
        f"{gw.url}/v1/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120)))  # fmt: skip
    with nodes_stepped(gw, pause=0.3, gate=gate):
        post.start()
        row = page.locator(f"#jobs tr[data-job='{job_id}']")
        row.locator(".status.submitted, .status.assigned").wait_for()  # open: no node has stepped
        shot(page, "8-explorer-jobs-live-submitted")
        page.click(f"#jobs tr[data-job='{job_id}'] a[href='#/job/{job_id}']")
        page.wait_for_selector("#timeline tr >> text=JobSubmitted")
        assert "JobFinalized" not in page.inner_text("#timeline")
        assert "in escrow until the job settles" in page.inner_text("#view")
        shot(page, "9-explorer-job-live-open")
        gate.set()
        page.wait_for_selector("#timeline tr >> text=Committed")
        page.wait_for_selector("#timeline tr >> text=JobFinalized")
        shot(page, "10-explorer-job-live-verified")
        post.join(120)
    assert page.evaluate("window.__same_page") is True  # no reload: the page updated itself
    assert answers and answers[0].status_code == 200
    v = answers[0].json()["veriml"]
    assert v["job_id"] == job_id and v["status"] == "verified" and (v["scheme"], v["n"]) == ("quorum", 3)
    assert page.locator("h2 .status").inner_text() == "verified"
    assert v["explorer"].endswith(f"/explorer#/job/{job_id}")
    page.click("header a[href='#/']")
    page.locator(f"#jobs tr[data-job='{job_id}'] .status.verified").wait_for()
    shot(page, "11-explorer-jobs")


def test_playground_refusals_move_no_coin(gw, page, errors):
    """No key, a wrong key, a prompt too long: the page says why, and no job reaches the chain."""
    with gw.seq.lock:
        jobs_before = gw.net.contracts.quorum.next_job_id()
    page.goto(f"{gw.url}/")
    assert "API key" in page.inner_text("#models-error")
    page.fill("#key", "vml_000000000000_" + "0" * 48)
    page.dispatch_event("#key", "change")
    page.wait_for_selector("#models-error:has-text('incorrect API key')")
    page.fill("#key", gw.create_key(label="refusals"))
    page.dispatch_event("#key", "change")
    page.wait_for_selector("#model option[value='tiny-gpt']", state="attached")
    assert page.inner_text("#models-error") == ""
    disabled = page.eval_on_selector_all("#n option", "os => os.filter((o) => o.disabled).map((o) => o.value)")
    assert disabled == ["7", "9"]  # five nodes serve tiny-gpt
    page.fill("#prompt", "x" * 600)  # tiny-gpt takes at most 512 bytes
    page.click("#send")
    page.wait_for_selector("#answer.bad")
    shot(page, "12-playground-refused")
    assert "512" in page.inner_text("#answer") and page.inner_text("#report") == ""
    assert "no fee was escrowed" in page.inner_text("#progress")
    with gw.seq.lock:
        assert gw.net.contracts.quorum.next_job_id() == jobs_before
    assert [e for e in errors if "401" in e] and [e for e in errors if "400" in e]
    assert all(re.search(r"\b40[01]\b", e) for e in errors), errors
    errors.clear()
