"""`veriml`: the command line (typer). Thin: parse flags into values, call the library, print."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from veriml.errors import ConfigError, VerimlError

app = typer.Typer(help="veriml: verifiable ML jobs on untrusted nodes, settled on an EVM chain.", no_args_is_help=True)
node_app = typer.Typer(help="Run a node.", no_args_is_help=True)
devnet_app = typer.Typer(
    help="A multi-process network on loopback: anvil, a blob service, node processes.", no_args_is_help=True
)
app.add_typer(node_app, name="node")
app.add_typer(devnet_app, name="devnet")
model_app = typer.Typer(help="Register models on a chain.", no_args_is_help=True)
app.add_typer(model_app, name="model")
console = Console()
err = Console(stderr=True)

DEVNET_DIR = Path(".veriml/devnet")


def _fail(e: Exception) -> None:
    err.print(f"[red]error:[/] {e}")
    raise typer.Exit(code=2)


@app.command()
def demo(
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the run as JSON here.")] = None,  # noqa: UP045
    chain: Annotated[str, typer.Option(help="embedded (in-process py-evm) or anvil (quorum scheme)")] = "embedded",
    scheme: Annotated[str, typer.Option(help="quorum, optimistic or zk")] = "quorum",
) -> None:
    """Staked nodes serve verified jobs on a real EVM; cheaters are caught and slashed."""
    if chain not in ("embedded", "anvil"):
        _fail(ValueError(f"--chain must be embedded or anvil, got {chain!r}"))
    if scheme not in ("quorum", "optimistic", "zk"):
        _fail(ValueError(f"--scheme must be quorum, optimistic or zk, got {scheme!r}"))
    try:
        if scheme == "quorum":
            from veriml.demo import run_demo

            run_demo(console, json_path, chain)
        elif scheme == "optimistic":
            from veriml.demo_optimistic import run_optimistic_demo

            run_optimistic_demo(console, json_path)
        else:
            from veriml.demo_zk import run_zk_demo

            run_zk_demo(console, json_path)
    except VerimlError as e:
        _fail(e)


@app.command()
def profile(
    model: Annotated[str, typer.Argument(help="Shipped model to profile (an image model with the phash policy).")],
    samples: Annotated[int, typer.Option(help="Jobs to run under each honest variation.")] = 256,
    margin: Annotated[int, typer.Option(help="Bits added to the worst honest distance.")] = 2,
) -> None:
    """Run the honest variations, measure output distances, and write the derived threshold into the manifest."""
    from veriml.models.profile import profile_command

    if samples < 1 or margin < 0:
        _fail(ValueError(f"--samples must be >= 1 and --margin >= 0, got {samples} and {margin}"))
    try:
        profile_command(model, console, samples=samples, margin=margin)
    except VerimlError as e:
        _fail(e)


@app.command()
def models() -> None:
    """List the shipped models."""
    from veriml.models import zoo

    for name in zoo.list_models():
        m = zoo.manifest(name)
        console.print(f"{name}  id 0x{m.model_id().hex()}  policy {m.policy}  price {m.price_wei} wei")


@app.command()
def submit(
    prompt: Annotated[Optional[str], typer.Option(help="The text to continue (text models).")] = None,  # noqa: UP045
    image: Annotated[Optional[str], typer.Option(help="Class label to draw (image models, e.g. tiny-shapes).")] = None,  # noqa: UP045
    out: Annotated[Optional[Path], typer.Option(help="Where to save a verified image (PNG).")] = None,  # noqa: UP045
    model: Annotated[Optional[str], typer.Option(help="Shipped model name or 0x model id.")] = None,  # noqa: UP045
    quorum: Annotated[int, typer.Option(help="Number of nodes (odd, 1..9).")] = 3,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="Tokens to generate.")] = None,  # noqa: UP045
    seed: Annotated[Optional[int], typer.Option(help="Sample with this seed (greedy if absent).")] = None,  # noqa: UP045
    fee: Annotated[Optional[int], typer.Option(help="Fee in wei (default: n x price).")] = None,  # noqa: UP045
    devnet: Annotated[Path, typer.Option(help="The devnet directory written by `veriml devnet up`.")] = DEVNET_DIR,
    local: Annotated[bool, typer.Option("--local", help="Run on a throwaway in-process network instead.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for settlement.")] = 300.0,
    chat: Annotated[Optional[str], typer.Option(help="A question for a chat model (one user message).")] = None,  # noqa: UP045
    embed: Annotated[Optional[list[str]], typer.Option(help="A text to embed (repeat for several).")] = None,  # noqa: UP045
    scheme: Annotated[str, typer.Option(help="quorum, optimistic (int-mlp) or zk (digits-mlp).")] = "quorum",
    digit: Annotated[Optional[int], typer.Option(help="optimistic/zk: classify scikit-learn digit N.")] = None,  # noqa: UP045
    pixels: Annotated[Optional[str], typer.Option(help="optimistic/zk: 64 comma-separated pixels 0..16.")] = None,  # noqa: UP045
) -> None:
    """Submit a text (--prompt), image (--image), chat (--chat) or embeddings (--embed) job, or with --scheme
    optimistic or zk a digit to classify (--digit N or --pixels); print the verified result or the refusal."""
    from veriml.client.report import print_result

    if scheme != "quorum":
        given = {
            "--prompt": prompt, "--image": image, "--chat": chat, "--embed": embed, "--out": out, "--seed": seed,
            "--max-new-tokens": max_new_tokens, "--quorum": None if quorum == 3 else quorum,
        }  # fmt: skip
        _submit_digit(scheme, model, digit, pixels, fee, devnet, local, json_out, timeout, given)
        return
    if digit is not None or pixels is not None:
        _fail(ValueError("--digit and --pixels are inputs of --scheme optimistic or zk jobs"))
    if sum(x is not None for x in (prompt, image, chat, embed)) != 1:
        _fail(ValueError("give exactly one of --prompt, --image LABEL, --chat QUESTION or --embed TEXT"))
    defaults = {"image": "tiny-shapes", "chat": "smollm2-135m-instruct", "embed": "minilm-l6-v2"}
    kind = "image" if image is not None else "chat" if chat is not None else "embed" if embed else "text"
    model = model or defaults.get(kind, "tiny-gpt")

    def send(client):  # noqa: ANN001, ANN202
        if chat is not None:
            messages = [{"role": "user", "content": chat}]
            return client.submit_chat(model, messages, quorum, max_new_tokens, seed, fee)
        if embed is not None:
            return client.submit_embeddings(model, list(embed), quorum, fee)
        if image is not None:
            return client.submit_image(model, image, seed or 0, quorum, fee)
        return client.submit_text(model, prompt, quorum, max_new_tokens, seed, fee)

    try:
        if local:
            from veriml.sim.network import LocalNetwork, NodeSpec

            with LocalNetwork.start([NodeSpec() for _ in range(max(quorum, 3))], models=(model,)) as net:
                job_id, _ = send(net.client)
                result = net.client.wait(job_id, between=net.tick, timeout=timeout)
        else:
            from veriml.devnet import connect_client

            client = connect_client(devnet)
            job_id, tx = send(client)
            if not json_out:
                console.print(f"submitted job {job_id} (tx {tx}); waiting for the quorum...")
            result = client.wait(job_id, timeout=timeout)
    except (VerimlError, TimeoutError) as e:
        _fail(e)
    if image is not None and out is not None and result.document:
        out.write_bytes(result.document)
    if json_out:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print_result(console, result)
        if image is not None and out is not None and result.document:
            console.print(f"saved the verified image to {out}")


def _digit_pixels(digit: int | None, pixels: str | None) -> tuple[list[int], int | None]:
    """The 64 pixels to classify and, for a scikit-learn digit, its true label."""
    if (digit is None) == (pixels is None):
        raise ValueError("give exactly one of --digit N (a scikit-learn 8x8 digit) or --pixels P1,...,P64")
    if pixels is not None:
        try:
            values = [int(v) for v in pixels.replace(" ", "").split(",") if v != ""]
        except ValueError:
            raise ValueError("--pixels must be 64 comma-separated integers in 0..16") from None
        if len(values) != 64 or any(not 0 <= v <= 16 for v in values):
            raise ValueError(f"--pixels must be 64 integers in 0..16, got {len(values)} values")
        return values, None
    from sklearn.datasets import load_digits

    d = load_digits()
    if not 0 <= digit < len(d.target):  # type: ignore[operator]
        raise ValueError(f"--digit must be in 0..{len(d.target) - 1}, got {digit}")
    return [int(v) for v in d.data[digit]], int(d.target[digit])


def _submit_digit(
    scheme: str,
    model: str | None,
    digit: int | None,
    pixels: str | None,
    fee: int | None,
    devnet: Path,
    local: bool,
    json_out: bool,
    timeout: float,
    given: dict[str, object],
) -> None:
    """`veriml submit --scheme optimistic|zk`: one digit classified, then its verified class or the refusal."""
    from veriml import schemes
    from veriml.devnet import OPTIMISTIC_MODEL, ZK_MODEL
    from veriml.models import zoo

    try:
        spec = schemes.get(scheme)
    except ValueError as e:
        _fail(e)
    if spec.client is None or scheme not in ("optimistic", "zk"):
        _fail(ValueError(f"veriml submit takes quorum, optimistic and zk jobs, not {scheme} ones"))
    wrong = [flag for flag, v in given.items() if v is not None]
    if wrong:
        _fail(ValueError(f"{', '.join(wrong)} cannot be used with --scheme {scheme}: it classifies a digit "
                         "(--digit N or --pixels)"))  # fmt: skip
    default = {"optimistic": OPTIMISTIC_MODEL, "zk": ZK_MODEL}.get(scheme)
    model = model or default
    try:
        values, label = _digit_pixels(digit, pixels)
        if model is None:
            raise ConfigError(f"give --model for scheme {scheme}")
        man = zoo.manifest_of(model)
        if scheme == "optimistic" and man.architecture.get("type") != "int-mlp":
            raise ConfigError(f"{model} is not an integer model: the optimistic scheme runs {OPTIMISTIC_MODEL}")
        if scheme == "zk" and not spec.registers(man):
            raise ConfigError(f"{model} has no zk circuit: the zk scheme runs {ZK_MODEL}")
    except (ValueError, VerimlError) as e:
        _fail(e)
    try:
        if local:
            from veriml.sim.network import LocalNetwork, NodeSpec

            specs = [NodeSpec(schemes=(scheme,))]
            if scheme == "optimistic":
                specs = [NodeSpec(schemes=(scheme,), options={"watch_share": 0.0}),
                         NodeSpec(schemes=(scheme,), options={"executes": False})]  # fmt: skip
            with LocalNetwork.start(specs, models=(model,), client_scheme=scheme) as net:
                result = _run_digit(scheme, model, net.client, values, fee, timeout, json_out, net.tick)
        else:
            from veriml.devnet import connect_scheme_client

            if scheme == "zk" and model != ZK_MODEL:
                raise ConfigError(f"the devnet's provers serve {ZK_MODEL}, not {model}")
            client = connect_scheme_client(devnet, scheme)
            result = _run_digit(scheme, model, client, values, fee, timeout, json_out, None)
    except (VerimlError, TimeoutError, ValueError) as e:
        _fail(e)
    if label is not None:
        result["true_label"] = label
    if json_out:
        print(json.dumps(result, indent=2))
        return
    status = result["status"]
    colour = "green" if status == "verified" else "red"
    who = result.get("executor") or result.get("node")
    console.print(f"job {result['id']} · model {model} · {scheme} · [{colour}]{status}[/] (node {who})")
    if status == "verified":
        predicted = result.get("prediction", result.get("label"))
        how = ("posted with its trace root and unchallenged through the challenge window" if scheme == "optimistic"
               else "its proof checked on-chain by the model's verifier")  # fmt: skip
        truth = "" if label is None else f" (true digit {label})"
        console.print(f"[bold]class {predicted}[/]{truth}: {how}")
    else:
        console.print(f"[red]refused[/]: {result.get('reason') or status}")
    console.print(f"fee {result['fee']} wei, refunded {result['refund']}")
    for what, tx in (result.get("txs") or {}).items():
        if tx:
            console.print(f"  {what} tx {tx}")


def _run_digit(scheme: str, model: str, client, values: list[int], fee, timeout: float, quiet: bool, between) -> dict:  # noqa: ANN001
    """Submit one digit with the scheme's client and wait for it to settle; its result as JSON."""
    if scheme == "optimistic":
        from veriml.models.intmlp import encode_pixels

        job_id = client.submit(model, encode_pixels(values), fee)
    else:
        job_id = client.submit_digit(values, fee)
    if not quiet:
        console.print(f"submitted {scheme} job {job_id}; waiting for it to settle...")
    if scheme == "optimistic":
        client.wait(job_id, timeout=timeout, between=between)
        return client.result(job_id)
    return client.wait(job_id, between=between, timeout=timeout).to_json()


@node_app.command("run")
def node_run(
    rpc: Annotated[str, typer.Option(help="JSON-RPC URL of the chain.")],
    deployment: Annotated[Path, typer.Option(help="Deployment JSON (addresses).")],
    inputs: Annotated[str, typer.Option(help="Where job inputs are fetched: blob service URL or directory.")],
    account: Annotated[int, typer.Option(help="Dev account index to sign with (anvil/embedded).")] = -1,
    key: Annotated[str | None, typer.Option(help="Private key (hex) to sign with.", envvar="VERIML_NODE_KEY")] = None,  # noqa: UP045
    model: Annotated[list[str], typer.Option(help="Models to serve.")] = ["tiny-gpt"],  # noqa: B006
    stake_eth: Annotated[float, typer.Option(help="Stake to register with, in ETH.")] = 2.0,
    port: Annotated[int, typer.Option(help="Port for this node's output endpoint (127.0.0.1).")] = 0,
    state: Annotated[Path, typer.Option(help="SQLite state file.")] = Path(".veriml/node.sqlite"),
    fault: Annotated[
        str, typer.Option(help="Simulated misbehaviour (honest, wrong-output, no-show, bad-reveal).")
    ] = "honest",
    poll: Annotated[float, typer.Option(help="Seconds between steps.")] = 0.3,
    scheme: Annotated[list[str], typer.Option(help="Schemes to take part in (repeat for several).")] = ["quorum"],  # noqa: B006
    execute: Annotated[
        bool, typer.Option("--execute/--no-execute", help="optimistic: stake and execute (--no-execute: watch only).")
    ] = True,
    watch_share: Annotated[float, typer.Option(help="optimistic: share of posted jobs to re-execute, 0..1.")] = 1.0,
    zk_cache: Annotated[Optional[Path], typer.Option(help="zk: circuit and key cache (~/.cache/veriml/zk).")] = None,  # noqa: UP045
) -> None:
    """Follow the chain and serve jobs until interrupted; resumes open jobs after a restart."""
    from veriml.node.process import NodeProcessConfig, run_node_process

    wrap = None
    if fault != "honest":
        # Dishonest behaviour wraps the real node from outside (veriml.sim), for tests and the devnet.
        from veriml.sim.faults import Fault, faulty_role

        if fault not in {f.value for f in Fault}:
            _fail(ValueError(f"--fault must be one of {', '.join(f.value for f in Fault)}, got {fault!r}"))
        wrap = lambda role: faulty_role(role, fault)  # noqa: E731

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    try:
        cfg = NodeProcessConfig.build(
            rpc=rpc,
            deployment=deployment,
            inputs=inputs,
            account=account,
            key=key,
            models=tuple(model),
            stake_eth=stake_eth,
            port=port,
            state=state,
            wrap=wrap,
            poll=poll,
            scheme_names=tuple(scheme),
            options={"executes": execute, "watch_share": watch_share}
            | ({"zk_cache_dir": zk_cache} if zk_cache is not None else {}),
        )
        run_node_process(cfg)
    except VerimlError as e:
        _fail(e)


@devnet_app.command("up")
def devnet_up(
    nodes: Annotated[int, typer.Option(help="Quorum node processes to start.")] = 3,
    dishonest: Annotated[int, typer.Option(help="How many of them answer without running the model.")] = 0,
    executors: Annotated[int, typer.Option(help="Optimistic executors (staked, int-mlp).")] = 1,
    watchers: Annotated[int, typer.Option(help="Optimistic watchers (re-execute posted jobs).")] = 1,
    provers: Annotated[int, typer.Option(help="zk provers (digits-mlp; 0 skips the circuit setup).")] = 1,
    directory: Annotated[Path, typer.Option("--dir", help="Where the devnet keeps its files.")] = DEVNET_DIR,
    model: Annotated[Optional[list[str]], typer.Option(help="Models to register and serve (repeat).")] = None,  # noqa: UP045
    gateway: Annotated[bool, typer.Option(help="Also start the gateway (OpenAI-compatible API).")] = True,
    gateway_port: Annotated[int, typer.Option(help="The gateway's port on 127.0.0.1 (0: a free one).")] = 8700,
    window_blocks: Annotated[
        int, typer.Option(help="Commit and reveal windows in blocks (anvil mines one per transaction).")
    ] = 240,
) -> None:
    """Start anvil, deploy every scheme, start a blob service, node processes (quorum nodes, optimistic
    executors and watchers, zk provers) and the gateway on 127.0.0.1; Ctrl-C or SIGTERM stops all."""
    import signal

    from veriml.devnet import Devnet

    def _terminate(*_: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM while starting up unwinds like Ctrl-C, so Devnet.start stops what it had started; SIGINT is
    # set too because a shell without job control starts background commands with it ignored.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    models = tuple(model or ("tiny-gpt",))
    try:
        with Devnet.start(
            directory, nodes, dishonest, log=console.print, models=models, gateway=gateway, gateway_port=gateway_port,
            window_blocks=window_blocks, executors=executors, watchers=watchers, provers=provers,
        ) as net:
            say = lambda line: console.print(line, soft_wrap=True)  # noqa: E731 - URLs and keys unbroken
            say(
                f"[green]devnet up[/]: chain {net.rpc_url}, blobs {net.blob_url}, {nodes} quorum nodes, "
                f"{executors} executors, {watchers} watchers, {provers} provers"
            )
            quorum = 3 if nodes >= 3 else 1
            say(f"  try: veriml submit --prompt 'The for statement' --quorum {quorum} --model {models[0]}")
            if executors:
                say("  try: veriml submit --scheme optimistic --digit 5")
            if provers:
                say("  try: veriml submit --scheme zk --digit 5")
            if net.gateway_url is not None:
                url = net.gateway_url
                say(f"  gateway: {url}/v1 (playground {url}/, explorer {url}/explorer)")
                say(f"  dev API key: {net.api_key}")
            net.wait(log=console.print)
    except KeyboardInterrupt:
        pass
    except VerimlError as e:
        _fail(e)
    console.print("devnet stopped")


@model_app.command("register")
def model_register(
    zk: Annotated[bool, typer.Option("--zk", help="Run the EZKL setup and bind the model's verifier on-chain.")],
    model: Annotated[str, typer.Option(help="Shipped model name or model directory.")] = "digits-mlp",
    devnet: Annotated[Path, typer.Option(help="Register on the devnet in this directory.")] = DEVNET_DIR,
    local: Annotated[bool, typer.Option("--local", help="Register on a throwaway in-process chain.")] = False,
    srs: Annotated[Optional[Path], typer.Option(help="A trusted SRS file (else a local, NOT trustless one).")] = None,  # noqa: UP045
    cache: Annotated[Optional[Path], typer.Option(help="Cache for keys, circuits and verifiers.")] = None,  # noqa: UP045
    record: Annotated[Optional[Path], typer.Option(help="Write the registration record (JSON) here.")] = None,  # noqa: UP045
) -> None:
    """Register a model for the zk scheme: settings, calibration, circuit, SRS, keys, verifier, deployment."""
    from veriml.chain.deploy import Deployment, deploy
    from veriml.chain.zk import deploy_zk
    from veriml.zk.register import register_zk_model

    if not zk:
        _fail(ValueError("only --zk registration is implemented here; quorum models register with the network"))
    try:
        if local:
            from veriml.chain.backends import embedded_chain

            chain = embedded_chain()
            deployment = deploy(chain)
        else:
            from veriml.chain.backends import connect_anvil

            info_path = devnet / "devnet.json"
            if not info_path.exists():
                raise ConfigError(f"no devnet at {devnet}: start one with `veriml devnet up` or use --local")
            chain = connect_anvil(json.loads(info_path.read_text())["rpc_url"])
            deployment = Deployment.load(devnet / "deployment.json")
        if "zk" not in deployment.schemes:
            deployment = deploy_zk(chain, deployment, chain.accounts[0])
            if not local:
                deployment.save(devnet / "deployment.json")
        zm = register_zk_model(chain, deployment, chain.accounts[0], model, cache, srs, console, record)
    except VerimlError as e:
        _fail(e)
    console.print(f"[green]registered[/] {model} (0x{zm.model_id.hex()}) with ZkJobs {deployment.schemes['zk']}")


@model_app.command("add")
def model_add(
    source: Annotated[Path, typer.Argument(help="A local Hugging Face checkpoint directory or a .gguf file.")],
    name: Annotated[str, typer.Option(help="The model's name.")],
    task: Annotated[str, typer.Option(help="chat or embeddings.")],
    out: Annotated[Path, typer.Option(help="Directory to write the model (its manifest.json) into.")],
    policy: Annotated[Optional[str], typer.Option(help="Output policy (default: tokens / tolerance).")] = None,  # noqa: UP045
    cache: Annotated[Optional[Path], typer.Option(help="Cache for converted weights (~/.cache/veriml).")] = None,  # noqa: UP045
    package: Annotated[Optional[str], typer.Option(help="Installed package the source ships in.")] = None,  # noqa: UP045
) -> None:
    """Import a local model: convert it once to safetensors in the cache and write its manifest."""
    from veriml.models.hf_import import import_model

    try:
        m = import_model(source, name, task, out, policy=policy, cache=cache, package=package)
    except VerimlError as e:
        _fail(e)
    console.print(
        f"[green]added[/] {m.name} ({m.task}, policy {m.policy}) id 0x{m.model_id().hex()}\n"
        f"  weights root {m.weights_root}, source sha256 {m.architecture['source']['sha256'][:16]}.., "
        f"manifest {out / 'manifest.json'}"
    )


@app.command("serve-blobs")
def serve_blobs_cmd(
    root: Annotated[Path, typer.Option(help="Directory to store blobs in.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8600,
) -> None:
    """Serve a content-addressed blob store over HTTP on loopback."""
    from veriml.gateway.blob_service import serve_blobs

    serve_blobs(root, "127.0.0.1", port)


@app.command()
def params(
    price: Annotated[float, typer.Option(help="What a user pays per job, ETH.")] = 0.003,
    compute: Annotated[float, typer.Option(help="An honest execution's cost to a node, ETH.")] = 0.0005,
    gas: Annotated[float, typer.Option(help="A node's gas per job, ETH.")] = 0.0002,
    stake: Annotated[float, typer.Option(help="The smallest stake to consider, ETH (searched up to 10x).")] = 2.0,
    collusion: Annotated[float, typer.Option(help="Colluding share r of the nodes, at most 1/3.")] = 1 / 3,
    burn_bps: Annotated[int, typer.Option(help="Share of every slash burned, basis points.")] = 1000,
) -> None:
    """Choose audit p, k, stake and slash (and quorum n) so every adversary's expected gain is negative."""
    from rich.table import Table

    from veriml.sim.economics import Market
    from veriml.sim.params import choose

    try:
        c = choose(
            Market(fee=price, compute=compute, gas=gas, stake=stake, collusion=collusion, burn_bps=burn_bps)
        )
    except VerimlError as e:
        _fail(e)
    m = c.market
    console.print(
        f"audit: p = {m.audit_p:.4f} ({round(m.audit_p * 10_000)} bps), k = {m.audit_k}, stake = {m.stake:g} ETH, "
        f"slash = {m.slash_bps} bps ({m.slash:g} ETH); {c.audit_overhead:.4f} executions per job"
    )
    console.print(f"quorum: n = {m.quorum_n}")
    burn = c.self_challenge_burn
    verdict = "[green]ok[/]" if burn <= m.burn else "[red]too low[/]"
    console.print(f"burn: {m.burn_bps} bps; a self-challenge loses from {round(burn * 10_000)} bps: {verdict}")
    table = Table(title="expected gain of each adversary over honesty, ETH per job (negative: deterred)")
    for col in ("scheme", "adversary", "gain", "margin"):
        table.add_column(col, justify="right" if col in ("gain", "margin") else "left")
    for (scheme, adversary), g in c.gains.items():
        table.add_row(scheme, adversary, f"{g:.6g}", f"{-g:.6g}")
    console.print(table)


@app.command()
def schedule(
    scenario: Annotated[str, typer.Option(help="A scenario JSON file, or a shipped one: 0-4, worldwide, ...")],
    seed: Annotated[int, typer.Option(help="Seed of the search.")] = 0,
    time: Annotated[float, typer.Option(help="Search time, seconds.")] = 10.0,
    method: Annotated[str, typer.Option(help="ours (seeded local search) or dt-fm (their genetic search)")] = "ours",
) -> None:
    """Place a pipeline- and data-parallel training job on a scenario's devices; print the placement and its cost."""
    try:
        from veriml.scheduling.report import schedule_command
    except ImportError as e:
        _fail(ConfigError(f"veriml schedule needs numpy and scipy (pip install 'veriml[train]'): {e}"))

    if method not in ("ours", "dt-fm") or time <= 0:
        _fail(ValueError(f"--method must be ours or dt-fm and --time > 0, got {method!r} and {time}"))
    try:
        schedule_command(console, scenario, seed, time, method)  # type: ignore[arg-type]
    except VerimlError as e:
        _fail(e)


gateway_app = typer.Typer(help="The OpenAI-compatible verified API, playground and explorer.", no_args_is_help=True)
gateway_key_app = typer.Typer(help="API keys of a gateway (stored hashed in its database).", no_args_is_help=True)
gateway_app.add_typer(gateway_key_app, name="key")
app.add_typer(gateway_app, name="gateway")
GATEWAY_DB = Path(".veriml/gateway.sqlite")


@gateway_app.command("serve")
def gateway_serve(
    local: Annotated[bool, typer.Option("--local", help="Serve a throwaway in-process network.")] = False,
    devnet: Annotated[Path, typer.Option(help="Serve the devnet in this directory.")] = DEVNET_DIR,
    db: Annotated[Path, typer.Option(help="The gateway's SQLite database (keys, queue, index).")] = GATEWAY_DB,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8700,
    account: Annotated[int, typer.Option(help="Dev account that pays for jobs (devnet).")] = 23,
    nodes: Annotated[int, typer.Option(help="In-process nodes (--local).")] = 3,
    model: Annotated[Optional[list[str]], typer.Option(help="Models to serve (--local).")] = None,  # noqa: UP045
    dev_key: Annotated[bool, typer.Option("--dev-key", help="Create and print an API key (1 ETH, 600/min).")] = False,
    help_after: Annotated[
        float, typer.Option(help="Seconds a devnet job may sit due before the gateway assigns or finalizes it.")
    ] = 1.0,
) -> None:
    """Serve /v1 (OpenAI-compatible), the playground at / and the explorer at /explorer on 127.0.0.1."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per blob fetch drowns the gateway's own
    try:
        if local:
            from veriml.gateway.harness import LocalGateway
            from veriml.sim.network import NodeSpec

            if not 1 <= nodes <= 20:
                raise ConfigError(f"--nodes must be in 1..20, got {nodes}")
            models = tuple(model or ("tiny-gpt", "tiny-shapes"))
            gw = LocalGateway.start([NodeSpec() for _ in range(nodes)], models, db_path=db, port=port)
            try:
                key = gw.create_key(10**18, 600, "dev") if dev_key else None
                console.print(f"[green]gateway up[/]: {gw.url}/v1 (playground {gw.url}/, explorer {gw.url}/explorer)")
                if key:
                    console.print(f"dev API key: {key}")
                import threading

                threading.Event().wait()
            except KeyboardInterrupt:
                pass
            finally:
                gw.close()
            return
        from veriml.gateway.database import Database
        from veriml.gateway.sequencer import Sequencer
        from veriml.gateway.server import devnet_client, run_foreground

        if not 0 <= help_after <= 3600:
            raise ConfigError(f"--help-after must be in 0..3600 seconds, got {help_after}")
        database = Database(db)
        # The devnet's nodes assign and finalize on their own; the gateway steps in only for a job they left.
        seq = Sequencer(database, devnet_client(str(devnet), account), explorer=f"http://127.0.0.1:{port}",
                        help_after=help_after)  # fmt: skip
        if dev_key:
            console.print(f"dev API key: {seq.keys.create(10**18, 600, 'dev')[0]}")
        console.print(f"[green]gateway[/] on http://127.0.0.1:{port}/v1 for the devnet in {devnet}")
        run_foreground(seq, "127.0.0.1", port)
    except VerimlError as e:
        _fail(e)


@gateway_key_app.command("create")
def gateway_key_create(
    spend_limit: Annotated[int, typer.Option(help="Most wei this key may spend on jobs, in total.")],
    rate: Annotated[int, typer.Option(help="Most requests per minute.")] = 60,
    label: Annotated[str, typer.Option(help="A note to recognise the key by.")] = "",
    db: Annotated[Path, typer.Option(help="The gateway's SQLite database.")] = GATEWAY_DB,
) -> None:
    """Create an API key; the secret is printed once and stored only as a salted HMAC."""
    from veriml.gateway.database import Database
    from veriml.gateway.keys import KeyStore

    try:
        secret, info = KeyStore(Database(db)).create(spend_limit, rate, label)
    except VerimlError as e:
        _fail(e)
    console.print(f"created key {info.id}: spend limit {info.spend_limit} wei, {info.rate_per_min} requests/min")
    print(secret)


@gateway_key_app.command("list")
def gateway_key_list(
    db: Annotated[Path, typer.Option(help="The gateway's SQLite database.")] = GATEWAY_DB,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the keys with their limits and usage (never their secrets)."""
    from veriml.gateway.database import Database
    from veriml.gateway.keys import KeyStore

    if not db.exists():
        _fail(ConfigError(f"no gateway database at {db}"))
    infos = KeyStore(Database(db)).list()
    if json_out:
        print(json.dumps([i.to_json() for i in infos], indent=2))
        return
    for i in infos:
        console.print(
            f"{i.id}  {i.label or '-'}  limit {i.spend_limit}  spent {i.spent}  reserved {i.reserved}  "
            f"refunded {i.refunded}  {i.requests} requests  {i.rate_per_min}/min{'  REVOKED' if i.revoked else ''}"
        )


if __name__ == "__main__":  # pragma: no cover
    app()
