// Compiles contracts/src (and the test-only contracts in contracts/test) with solc-js standard JSON
// and writes one artifact per contract into src/veriml/chain/artifacts/: abi, bytecode, and the
// compiler settings and source hashes, so a test can tell when sources and artifacts drift.
// Usage: node compile.js [--check]   (--check compares instead of writing; exit 1 on drift)
const fs = require("fs");
const path = require("path");
const crypto = require("crypto");
const solc = require("solc");

const here = __dirname;
const outDir = path.join(here, "..", "src", "veriml", "chain", "artifacts");
const check = process.argv.includes("--check");

function listSol(dir) {
  return fs.readdirSync(path.join(here, dir)).filter((f) => f.endsWith(".sol")).sort().map((f) => `${dir}/${f}`);
}

const files = [...listSol("src"), ...listSol("test")];
const sources = {};
for (const f of files) sources[f] = { content: fs.readFileSync(path.join(here, f), "utf8") };

const settings = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  remappings: ["@openzeppelin/=node_modules/@openzeppelin/"],
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

function findImports(p) {
  for (const base of [here, path.join(here, "node_modules")]) {
    const full = path.join(base, p);
    if (fs.existsSync(full)) return { contents: fs.readFileSync(full, "utf8") };
  }
  const mapped = p.replace(/^@openzeppelin\//, "node_modules/@openzeppelin/");
  const full = path.join(here, mapped);
  if (fs.existsSync(full)) return { contents: fs.readFileSync(full, "utf8") };
  return { error: `not found: ${p}` };
}

const input = { language: "Solidity", sources, settings };
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);

const sha = (s) => crypto.createHash("sha256").update(s).digest("hex");
let drift = [];
if (!check) fs.mkdirSync(outDir, { recursive: true });
for (const f of files) {
  for (const [name, c] of Object.entries(output.contracts[f] || {})) {
    if (!c.evm.bytecode.object) continue; // interfaces and libraries inlined elsewhere
    const artifact = {
      contractName: name,
      sourceName: f,
      sourceSha256: sha(sources[f].content),
      compiler: `solc-js ${solc.version()}`,
      settings: { optimizer: settings.optimizer, evmVersion: settings.evmVersion },
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
      deployedBytecode: "0x" + c.evm.deployedBytecode.object,
    };
    const text = JSON.stringify(artifact, null, 1) + "\n";
    const target = path.join(outDir, `${name}.json`);
    if (check) {
      const old = fs.existsSync(target) ? fs.readFileSync(target, "utf8") : "";
      if (old !== text) drift.push(name);
    } else {
      fs.writeFileSync(target, text);
      console.log(`${name}: ${c.evm.deployedBytecode.object.length / 2} bytes runtime`);
    }
  }
}
if (check) {
  if (drift.length) {
    console.error(`artifacts drifted from sources: ${drift.join(", ")} (run: make contracts)`);
    process.exit(1);
  }
  console.log("artifacts match sources");
}
