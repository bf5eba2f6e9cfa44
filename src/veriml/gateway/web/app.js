// The playground: send one chat request as a stream, show the job's verification progress live, and
// the answer only once the chain has settled it (the gateway sends no content before that).
"use strict";

const keyInput = $("#key");
keyInput.value = new URLSearchParams(location.hash.slice(1)).get("key") || localStorage.getItem("veriml-key") || "";

async function loadModels() {
  const select = $("#model");
  $("#models-error").textContent = "";
  if (!keyInput.value) {
    $("#models-error").textContent = "enter an API key (veriml gateway key create) to list the models";
    return;
  }
  try {
    const body = await getJSON("/v1/models", keyInput.value);
    select.innerHTML = "";
    for (const m of body.data) {
      if (m.veriml.task !== "chat" && m.veriml.task !== "text-generation") continue;
      const opt = document.createElement("option");
      opt.value = m.id;
      opt.textContent = `${m.id} (${m.veriml.task}, ${m.veriml.nodes} nodes)`;
      opt.dataset.nodes = m.veriml.nodes;
      opt.dataset.price = m.veriml.price_wei;
      select.appendChild(opt);
    }
    const schemes = body.data.length ? body.data[0].veriml.schemes : ["quorum"];
    $("#scheme").innerHTML = schemes.map((s) => `<option>${esc(s)}</option>`).join("");
    limitQuorum();
  } catch (e) {
    $("#models-error").textContent = e.message;
  }
}
// A quorum can be no larger than the number of nodes serving the model (and is odd, for a strict majority).
function limitQuorum() {
  const opt = $("#model").selectedOptions[0];
  const nodes = opt ? Number(opt.dataset.nodes) : Infinity;
  const nSelect = $("#n");
  for (const o of nSelect.options) o.disabled = Number(o.value) > nodes;
  if (nSelect.selectedOptions[0]?.disabled) nSelect.value = [...nSelect.options].filter((o) => !o.disabled).pop()?.value ?? "1";
  showFee();
}

// The fee escrowed for a job: the model's price per node times n (what a slashed node would have been
// paid comes back as a refund).
function showFee() {
  const opt = $("#model").selectedOptions[0];
  if (!opt || !opt.dataset.price) { $("#fee").textContent = ""; return; }
  const n = Number($("#n").value);
  $("#fee").textContent = `fee: ${n} x ${eth(opt.dataset.price)} = ${eth(BigInt(opt.dataset.price) * BigInt(n))} escrowed`;
}
$("#model").addEventListener("change", limitQuorum);
$("#n").addEventListener("change", showFee);
keyInput.addEventListener("change", () => { localStorage.setItem("veriml-key", keyInput.value); loadModels(); });
loadModels();

const PHASES = ["queued", "submitted", "assigned", "committing", "revealing", "verified"];

// The live panel: where the job is, then one row per drawn node, filled in as its commit and reveal
// land on chain, and its verdict once the chain has settled the job.
function showProgress(v) {
  const n = v.n ?? "?";
  const at = PHASES.indexOf(v.status === "submitting" ? "queued" : v.status);
  const phases = PHASES.map((p, i) => {
    const end = i === PHASES.length - 1 && v.final ? v.status : p;
    const cls = v.final || i < at ? "done" : i === at ? "now" : "";
    return `<span class="phase ${cls} ${esc(end)}">${esc(end)}</span>`;
  }).join('<span class="arrow">&rarr;</span>');
  const steps = [`status: ${statusSpan(v.status)}` + (v.job_id ? ` (job <a href="/explorer#/job/${esc(v.job_id)}">${esc(v.job_id)}</a>)` : "")];
  if (v.txs && v.txs.submit) steps.push(`submitted in tx <code>${esc(short(v.txs.submit, 14))}</code>, fee ${eth(v.fee)} in escrow`);
  if (v.assigned && v.assigned.length) steps.push(`nodes drawn: ${v.assigned.length} of the staked nodes serving the model`);
  if (v.committed) steps.push(`commits: ${v.committed.length} / ${n}`);
  if (v.revealed) steps.push(`reveals: ${v.revealed.length} / ${n}`);
  $("#progress").innerHTML = `<p class="phases">${phases}</p><ul class="steps">${steps.map((s) => `<li>${s}</li>`).join("")}</ul>${nodeTable(v)}`;
}

function nodeTable(v) {
  const drawn = v.assigned || [];
  if (!drawn.length) return "";
  const txs = v.txs || {};
  const cell = (tx) => (tx ? `<span class="ok">&#10003;</span> <code>${esc(short(tx, 12))}</code>` : '<span class="muted">waiting</span>');
  const rows = drawn.map((a) => {
    const verdict = (v.agree || []).includes(a) ? '<span class="ok">agreed, paid</span>'
      : (v.slashed || []).includes(a) ? '<span class="bad">slashed</span>'
      : `<span class="muted">${v.final ? "-" : "pending"}</span>`;
    return `<tr data-node="${esc(a)}"><td><a href="/explorer#/node/${esc(a)}"><code>${esc(short(a))}</code></a></td>
      <td>${cell(txs[`commit:${a}`])}</td><td>${cell(txs[`reveal:${a}`])}</td><td class="verdict">${verdict}</td></tr>`;
  });
  return `<table id="nodes-table"><tr><th>node drawn</th><th>commit (hides its digest)</th><th>reveal</th><th>verdict</th></tr>${rows.join("")}</table>`;
}

// The settled report: who agreed, who was slashed, the digest the answer was checked against, the fee.
function showReport(v) {
  const nodes = (xs) => (xs && xs.length ? xs.map((a) => `<code>${esc(short(a))}</code>`).join(", ") : "none");
  const txs = ["submit", "assign", "finalize", "refund"].filter((k) => v.txs && v.txs[k])
    .map((k) => `${esc(k)} <code>${esc(short(v.txs[k], 14))}</code>`).join("<br>");
  const link = v.job_id != null
    ? `<dt>explorer</dt><dd><a id="explorer-link" href="/explorer#/job/${esc(v.job_id)}">job ${esc(v.job_id)} in the explorer: every chain event and transaction</a></dd>` : "";
  $("#report").innerHTML = `<h3>Report</h3><dl id="report-table">
    <dt>status</dt><dd>${statusSpan(v.status)}${v.reason ? ` <span class="bad">${esc(v.reason)}</span>` : ""}</dd>
    <dt>job</dt><dd>${esc(v.job_id ?? "-")} (${esc(v.scheme)}, n = ${esc(v.n)})</dd>
    <dt>agreed</dt><dd id="report-agree">${nodes(v.agree)}</dd>
    <dt>slashed</dt><dd id="report-slashed">${nodes(v.slashed)}</dd>
    <dt>output digest</dt><dd><code>${esc(v.output_digest || "-")}</code></dd>
    <dt>fee paid / refund</dt><dd id="report-fee">${eth(v.fee_paid)} / ${eth(v.refund)} (of ${eth(v.fee)} escrowed)</dd>
    <dt>transactions</dt><dd>${txs || "-"}</dd>${link}
  </dl>`;
}

async function send() {
  const button = $("#send");
  button.disabled = true;
  $("#answer").textContent = "waiting for the network to verify the answer...";
  $("#answer").className = "muted";
  $("#answer-status").textContent = "";
  $("#report").innerHTML = "";
  $("#progress").innerHTML = "";
  $("#progress").className = "";
  const body = {
    model: $("#model").value,
    messages: [{ role: "user", content: $("#prompt").value }],
    max_tokens: Number($("#max-tokens").value),
    stream: true,
    veriml: { scheme: $("#scheme").value, n: Number($("#n").value) },
  };
  try {
    const resp = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${keyInput.value}` },
      body: JSON.stringify(body),
    });
    if (!resp.ok) {
      const err = await resp.json();
      $("#progress").innerHTML = `<p class="muted">refused (HTTP ${resp.status}, ${esc(err?.error?.code || err?.error?.type)}) before any job was submitted: no fee was escrowed, nothing was spent</p>`;
      throw new Error(err?.error?.message || `HTTP ${resp.status}`);
    }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = frame.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (!data || data === "[DONE]") continue;
        handle(JSON.parse(data));
      }
    }
  } catch (e) {
    $("#answer").textContent = `error: ${e.message}`;
    $("#answer").className = "bad";
  } finally {
    button.disabled = false;
  }
}

function handle(event) {
  if (event.error) {
    $("#answer").textContent = `not verified: ${event.error.message}`;
    $("#answer").className = "bad";
    if (event.veriml) { showProgress(event.veriml); showReport(event.veriml); }
    return;
  }
  const v = event.veriml || {};
  showProgress(v);
  for (const choice of event.choices || []) {
    if (choice.delta && choice.delta.content) {
      $("#answer").textContent = choice.delta.content;
      $("#answer").className = "";
      $("#answer-status").innerHTML = statusSpan(v.status);
    }
  }
  if (v.final) showReport(v);
}

$("#send").addEventListener("click", send);
