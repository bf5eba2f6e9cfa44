// The explorer: hash routes for the job list, a job's timeline, nodes and models; views refresh every
// second while shown, so new jobs and new chain events appear live.
"use strict";

let timer = null;

function link(kind, id, text) {
  return `<a href="#/${kind}/${encodeURIComponent(id)}">${esc(text ?? id)}</a>`;
}

async function jobsView() {
  const body = await getJSON("/v1/veriml/explorer/jobs?limit=50");
  $("#head").textContent = `indexed to block ${body.head}`;
  const rows = body.jobs.map((j) => `<tr data-job="${j.job_id}"><td>${link("job", j.job_id)}</td><td>${link("model", j.model)}</td>
    <td>${statusSpan(j.status)}</td><td>${j.n}</td><td>${j.commits}/${j.n}</td><td>${j.reveals}/${j.n}</td>
    <td>${eth(j.fee)}</td><td><code>${esc(short(j.user))}</code></td><td>${j.submit_block}</td></tr>`);
  return `<section><h2>Recent jobs</h2><table id="jobs"><tr><th>job</th><th>model</th><th>status</th><th>n</th>
    <th>commits</th><th>reveals</th><th>fee</th><th>user</th><th>block</th></tr>${rows.join("")}</table></section>`;
}

async function jobView(id) {
  const body = await getJSON(`/v1/veriml/explorer/jobs/${encodeURIComponent(id)}`);
  const r = body.report, j = body.job;
  const nodes = (xs) => (xs.length ? xs.map((a) => link("node", a, short(a))).join(", ") : r.final ? "none" : "not yet");
  const rows = body.timeline.map((e) => `<tr><td>${e.block}</td><td>${esc(e.event)}</td><td>${esc(e.what)}</td>
    <td>${e.who ? link("node", e.who, short(e.who)) : ""}</td><td class="tx"><code>${esc(e.tx)}</code></td></tr>`);
  const output = body.request && body.request.output != null
    ? `<dt>verified output</dt><dd id="job-output">${esc(body.request.output)}</dd>` : "";
  return `<section><h2>Job ${esc(id)} ${statusSpan(r.status)}</h2><dl>
      <dt>model</dt><dd>${link("model", j.model)}</dd><dt>scheme, n</dt><dd>${esc(r.scheme)}, ${esc(r.n)}</dd>
      <dt>user</dt><dd><code>${esc(j.user)}</code></dd><dt>drawn</dt><dd>${nodes(r.assigned)}</dd>
      <dt>agreed</dt><dd>${nodes(r.agree)}</dd><dt>slashed</dt><dd>${nodes(r.slashed)}</dd>
      <dt>output digest</dt><dd><code>${esc(r.output_digest || "-")}</code></dd>${output}
      ${r.final ? `<dt>fee paid / refund</dt><dd>${eth(r.fee_paid)} / ${eth(r.refund)}</dd>`
        : `<dt>fee</dt><dd>${eth(r.fee)} in escrow until the job settles</dd>`}</dl></section>
    <section><h2>Timeline</h2><table id="timeline"><tr><th>block</th><th>event</th><th>what</th><th>who</th><th>tx</th></tr>
    ${rows.join("")}</table></section>`;
}

async function nodesView() {
  const body = await getJSON("/v1/veriml/explorer/nodes");
  const rows = body.nodes.map((n) => `<tr><td>${link("node", n.address, short(n.address))}</td><td>${eth(n.stake)}</td>
    <td>${n.jobs}</td><td>${n.agreed}</td><td>${n.slashes}</td><td>${eth(n.earned)}</td><td>${esc(n.models.join(", "))}</td></tr>`);
  return `<section><h2>Nodes</h2><table id="nodes"><tr><th>node</th><th>stake</th><th>jobs</th><th>agreed</th>
    <th>slashes</th><th>earned</th><th>models</th></tr>${rows.join("")}</table></section>`;
}

async function nodeView(addr) {
  const n = await getJSON(`/v1/veriml/explorer/nodes/${encodeURIComponent(addr)}`);
  const rows = n.history.map((h) => `<tr><td>${link("job", h.job_id)}</td><td>${statusSpan(h.status)}</td>
    <td>${h.agree.includes(n.address) ? "agreed" : h.slashed.includes(n.address) ? "slashed" : "-"}</td></tr>`);
  return `<section><h2>Node <code>${esc(n.address)}</code></h2><dl>
      <dt>stake</dt><dd>${eth(n.stake)}</dd><dt>endpoint</dt><dd><code>${esc(n.endpoint)}</code></dd>
      <dt>models</dt><dd>${esc(n.models.join(", "))}</dd><dt>jobs drawn</dt><dd>${n.jobs}</dd>
      <dt>in the majority</dt><dd>${n.agreed}</dd><dt>slashes</dt><dd>${n.slashes}</dd>
      <dt>earned</dt><dd>${eth(n.earned)}</dd></dl></section>
    <section><h2>Jobs</h2><table><tr><th>job</th><th>status</th><th>role</th></tr>${rows.join("")}</table></section>`;
}

async function modelsView() {
  const body = await getJSON("/v1/veriml/explorer/models");
  const rows = body.models.map((m) => `<tr><td>${link("model", m.name)}</td><td>${esc(m.task)}</td><td>${esc(m.policy)}</td>
    <td>${eth(m.price_wei)}</td><td>${m.nodes}</td><td><code>${esc(short(m.model_id, 14))}</code></td></tr>`);
  return `<section><h2>Models</h2><table id="models"><tr><th>model</th><th>task</th><th>policy</th><th>price per node</th>
    <th>nodes</th><th>id</th></tr>${rows.join("")}</table></section>`;
}

async function modelView(name) {
  const m = await getJSON(`/v1/veriml/explorer/models/${encodeURIComponent(name)}`);
  return `<section><h2>Model ${esc(m.name)}</h2><dl>
      <dt>task</dt><dd>${esc(m.task)}</dd><dt>model id</dt><dd><code>${esc(m.model_id)}</code></dd>
      <dt>weights root</dt><dd><code>${esc(m.weights_root)}</code></dd><dt>runtime</dt><dd>${esc(m.runtime)}</dd>
      <dt>policy</dt><dd>${esc(m.policy)} (threshold ${esc(m.policy_threshold)})</dd>
      <dt>verifier</dt><dd>${esc(m.verifier)}</dd><dt>price per node</dt><dd>${eth(m.price_wei)}</dd>
      <dt>nodes</dt><dd>${m.nodes}</dd></dl></section>
    <section><h2>Manifest</h2><pre class="mono">${esc(JSON.stringify(m.manifest, null, 2))}</pre></section>`;
}

async function render() {
  const [, kind, id] = (location.hash || "#/").slice(1).split("/").map(decodeURIComponent);
  const view = { job: () => jobView(id), node: () => nodeView(id), nodes: nodesView, models: modelsView,
    model: () => modelView(id) }[kind] || jobsView;
  if (view !== jobsView) $("#head").textContent = "";  // the indexed block is shown with the job list
  try {
    $("#view").innerHTML = await view();
  } catch (e) {
    $("#view").innerHTML = `<section class="bad">${esc(e.message)}</section>`;
  }
}

function route() {
  clearInterval(timer);
  render();
  timer = setInterval(render, 1000);
}
window.addEventListener("hashchange", route);
route();
