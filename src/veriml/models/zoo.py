"""The models shipped inside the package: one directory per model under `zoo/`, each with a manifest.json."""

from __future__ import annotations

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
        raise UnknownModel(f"no shipped model named {name!r}; known: {', '.join(known) or '(none)'}")
    return ZOO_DIR / name


def manifest(name: str) -> Manifest:
    """The manifest of shipped model `name`."""
    return Manifest.load(model_dir(name) / MANIFEST_FILE)


def by_model_id(model_id: bytes) -> str:
    """The name of the shipped model whose manifest hashes to `model_id`."""
    for name in list_models():
        if manifest(name).model_id() == model_id:
            return name
    raise UnknownModel(f"no shipped model has id 0x{bytes(model_id).hex()}; known: {', '.join(list_models())}")
