"""Loading a shipped model's runner by the task its manifest names."""

from __future__ import annotations

from veriml.models import zoo
from veriml.models.imagegen_runtime import ImageModel
from veriml.models.runtime import TextModel


def load_runner(name: str) -> TextModel | ImageModel:
    """A shipped model's runner: `ImageModel` for image generation, `TextModel` for text generation."""
    if zoo.manifest(name).task == "image-generation":
        return ImageModel.load(name)
    return TextModel.load(name)
