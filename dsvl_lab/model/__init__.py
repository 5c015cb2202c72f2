"""The DeepSeek-VL model, one file per component in dependency order:
attention -> siglip -> sam -> llm -> vision -> aligner -> dsvl."""
from .dsvl import DSVLModel, DSVLOutput

__all__ = ["DSVLModel", "DSVLOutput"]
