"""The models shipped inside the package: one directory per model under `zoo/`, each with a manifest.json."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from veriml.errors import UnknownModel
from veriml.models.manifest import Manifest

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
MANIFEST_FILE = "manifest.json"


def list_models() -> list[str]:
    """Names of the shipped models, sorted."""
    if not ZOO_DIR.is_dir():
        return []
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / MANIFEST_FILE).is_file())


def model_dir(name: str) -> Path:
    """The directory holding shipped model `name`."""
    known = list_models()
    if name not in known:
        shown = repr(name) if len(repr(name)) <= 60 else f"{repr(name)[:40]}... ({len(name)} characters)"
        raise UnknownModel(f"no shipped model named {shown}; known: {', '.join(known) or '(none)'}")
    return ZOO_DIR / name


def resolve_dir(name_or_dir: str | PathLike[str]) -> Path:
    """The directory of a shipped model given by name, or a model directory given by path."""
    if isinstance(name_or_dir, str) and name_or_dir in list_models():
        return model_dir(name_or_dir)
    if Path(name_or_dir).is_dir():
        return Path(name_or_dir)
    known = ", ".join(list_models())
    raise UnknownModel(f"{str(name_or_dir)!r} is neither a shipped model ({known}) nor a directory")


def manifest(name: str) -> Manifest:
    """The manifest of shipped model `name`."""
    return Manifest.load(model_dir(name) / MANIFEST_FILE)


def by_model_id(model_id: bytes) -> str:
    """The name of the shipped model whose manifest hashes to `model_id`."""
    for name in list_models():
        if manifest(name).model_id() == model_id:
            return name
    raise UnknownModel(f"no shipped model has id 0x{bytes(model_id).hex()}; known: {', '.join(list_models())}")


def manifest_of(name_or_dir: str | PathLike[str]) -> Manifest:
    """The manifest of a shipped model by name, or of a model directory by path."""
    return Manifest.load(resolve_dir(name_or_dir) / MANIFEST_FILE)
