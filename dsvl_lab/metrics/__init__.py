"""Evaluation, FLOPs and memory accounting.

- :mod:`.vl_eval`: multimodal evaluation on held-out task samples (exact match, option perplexity);
- :mod:`.flops`: analytic FLOPs per component and stage (``dsvl-lab flops``);
- :mod:`.memory`: analytic memory per stage: weights, gradients, AdamW state, activations (``dsvl-lab memory``).

Import the modules themselves (``from dsvl_lab.metrics.flops import stage_flops``): this package
imports none of them, so that ``dsvl_lab.training``, which uses :mod:`.vl_eval`, and :mod:`.flops`,
which reads the stages from ``dsvl_lab.training.spec``, never import each other half-built.
"""
