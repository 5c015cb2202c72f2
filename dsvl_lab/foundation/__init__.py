"""Tiny foundation models: the pretrained miniature LLM, SigLIP and SAM the stages start from.

    >>> from dsvl_lab.foundation import from_foundation          # doctest: +SKIP
    >>> model = from_foundation("dsvl-tiny-hybrid")                # doctest: +SKIP

``dsvl-lab pretrain lm|siglip|sam --preset dsvl-tiny-hybrid --out runs/x`` makes them; the
shipped files live in ``data_samples/foundation/<size>/`` with a model card each.
"""
from .common import FOUNDATION_DIR, PARTS, FoundationError, Recipe, tensor_checksum
from .run import RECIPES, from_foundation, pretrain, recipe_for

__all__ = ["FOUNDATION_DIR", "PARTS", "FoundationError", "RECIPES", "Recipe", "from_foundation", "pretrain",
           "recipe_for", "tensor_checksum"]
