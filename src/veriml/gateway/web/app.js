// The playground: send one chat request as a stream, show the job's verification progress live, and
// the answer only once the chain has settled it (the gateway sends no content before that).
"use strict";

const keyInput = $("#key");
keyInput.value = new URLSearchParams(location.hash.slice(1)).get("key") || localStorage.getItem("veriml-key") || "";

async function loadModels() {
  const select = $("#model");
  $("#models-error").textContent = "";
  if (!keyInput.value) return;
  try {
    const body = await getJSON("/v1/models", keyInput.value);
    select.innerHTML = "";
    for (const m of body.data) {
      if (m.veriml.task !== "chat" && m.veriml.task !== "text-generation") continue;
      const opt = document.createElement("option");
      opt.value = m.id;
      opt.textContent = `${m.id} (${m.veriml.task}, ${m.veriml.nodes} nodes)`;
      select.appendChild(opt);
    }
    const schemes = body.data.length ? body.data[0].veriml.schemes : ["quorum"];
    $("#scheme").innerHTML = schemes.map((s) => `<option>${esc(s)}</option>`).join("");
  } catch (e) {
    $("#models-error").textContent = e.message;
  }
}
keyInput.addEventListener("change", () => { localStorage.setItem("veriml-key", keyInput.value); loadModels(); });
loadModels();

function showProgress(v) {
  const n = v.n ?? "?";
  const steps = [`status: ${statusSpan(v.status)}` + (v.job_id ? ` (job <a href="/explorer#/job/${v.job_id}">${v.job_id}</a>)` : "")];
  if (v.txs && v.txs.submit) steps.push(`submitted in tx <code>${esc(short(v.txs.submit, 14))}</code>, fee ${eth(v.fee)}`);
  if (v.assigned && v.assigned.length) steps.push(`nodes drawn: ${v.assigned.map((a) => `<code>${esc(short(a))}</code>`).join(", ")}`);
  if (v.committed) steps.push(`commits: ${v.committed.length} / ${n}`);
  if (v.revealed) steps.push(`reveals: ${v.revealed.length} / ${n}`);
  $("#progress").innerHTML = steps.map((s) => `<li>${s}</li>`).join("");
}

function showReport(v) {
  const nodes = (xs) => (xs && xs.length ? xs.map((a) => `<code>${esc(short(a))}</code>`).join(", ") : "none");
  const txs = Object.entries(v.txs || {}).map(([k, t]) => `${esc(k)} <code>${esc(short(t, 14))}</code>`).join("<br>");
  $("#report").innerHTML = `<dl id="report-table">
    <dt>status</dt><dd>${statusSpan(v.status)}</dd>
    <dt>job</dt><dd>${esc(v.job_id)} (${esc(v.scheme)}, n = ${esc(v.n)})</dd>
    <dt>agreed</dt><dd id="report-agree">${nodes(v.agree)}</dd>
    <dt>slashed</dt><dd id="report-slashed">${nodes(v.slashed)}</dd>
    <dt>output digest</dt><dd><code>${esc(v.output_digest || "-")}</code></dd>
    <dt>fee paid / refund</dt><dd>${eth(v.fee_paid)} / ${eth(v.refund)}</dd>
    <dt>transactions</dt><dd>${txs || "-"}</dd>
    <dt>explorer</dt><dd><a id="explorer-link" href="/explorer#/job/${esc(v.job_id)}">job ${esc(v.job_id)} in the explorer</a></dd>
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
