"""Evaluation, FLOPs and memory accounting."""
