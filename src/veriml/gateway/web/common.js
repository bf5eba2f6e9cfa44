// Shared helpers of the playground and the explorer: element building, escaping, JSON fetch.
"use strict";
const $ = (sel) => document.querySelector(sel);

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function short(hex, n = 10) {
  const s = String(hex ?? "");
  return s.length > n + 4 ? s.slice(0, n) + ".." + s.slice(-4) : s;
}

// Wei as ETH text, exact (amounts travel as decimal strings; JS numbers would round them).
function eth(wei) {
  const s = String(wei ?? "0").replace(/^-/, "");
  const neg = String(wei ?? "").startsWith("-") ? "-" : "";
  const padded = s.padStart(19, "0");
  const whole = padded.slice(0, -18), frac = padded.slice(-18).replace(/0+$/, "");
  return `${neg}${whole}${frac ? "." + frac : ""} ETH`;
}

async function getJSON(url, key) {
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  const resp = await fetch(url, { headers });
  const body = await resp.json();
  if (!resp.ok) throw new Error(body?.error?.message || `HTTP ${resp.status}`);
  return body;
}

function statusSpan(status) {
  return `<span class="status ${esc(status)}">${esc(status)}</span>`;
}
