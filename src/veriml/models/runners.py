"""Loading a shipped model's runner by the task its manifest names."""

from __future__ import annotations

from typing import Any

from veriml.models import zoo


def load_runner(name: str) -> Any:
    """A shipped model's runner: `ImageModel` (image generation), `ChatModel` (chat), `EmbeddingModel`
    (embeddings) or `TextModel` (text generation)."""
    task = zoo.manifest(name).task
    if task == "image-generation":
        from veriml.models.imagegen_runtime import ImageModel

        return ImageModel.load(name)
    if task == "chat":
        from veriml.models.hf_runtime import ChatModel

        return ChatModel.load(name)
    if task == "embeddings":
        from veriml.models.hf_runtime import EmbeddingModel

        return EmbeddingModel.load(name)
    from veriml.models.runtime import TextModel

    return TextModel.load(name)
