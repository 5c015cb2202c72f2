"""Tiny foundation models: the pretrained miniature LLM, SigLIP and SAM the stages start from.

    >>> from dsvl_lab.foundation import from_foundation          # doctest: +SKIP
    >>> model = from_foundation("dsvl-tiny-hybrid")                # doctest: +SKIP

``dsvl-lab pretrain lm|siglip|sam --preset dsvl-tiny-hybrid --out runs/x`` makes them; the
shipped files live in ``data_samples/foundation/<size>/`` with a model card each.

Modules: ``recipe`` (Recipe, sizes, parts), ``step_data`` (batches as a function of the step),
``lm`` / ``siglip`` / ``sam`` (the three parts), ``curves`` and ``card`` (learning curve, model
card), ``shipping`` (bf16 export, checked loading, copying into the foundation folder) and ``run``
(``pretrain``, ``from_foundation``). Training itself goes through ``dsvl_lab.harness``.
"""
from ..artifacts import tensor_checksum
from .recipe import FOUNDATION_DIR, PARTS, FoundationError, Recipe
from .run import RECIPES, from_foundation, pretrain, recipe_for

__all__ = ["FOUNDATION_DIR", "PARTS", "FoundationError", "RECIPES", "Recipe", "from_foundation", "pretrain",
           "recipe_for", "tensor_checksum"]
