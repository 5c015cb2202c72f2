"""Looking inside the model: shape traces, parameter breakdowns and the figures the notebooks show.

``shapes.py`` holds the helpers of notebook 01 (the model tour): forward-hook shape traces (on
real tensors or on the meta device, so the released 7B can be traced without memory), parameter
counts per component, and plain matplotlib renderers for image views, label masks and attention.

Attention inspection (notebook 04), one file per concern:
``attention_capture`` (:class:`AttentionCapture`: record chosen layers and heads within a memory
budget), ``attention_trace`` (:class:`AttentionTrace`: one file with the weights, token labels,
segments, grid geometry and the image; aggregations), ``attention_render`` (static matplotlib
figures), ``attention_explorer`` (:class:`AttentionExplorer`, an ipywidgets box) and
``shipped_traces`` (the traces under ``data_samples/traces/``).
"""
from .attention_capture import AttentionCapture, CaptureBudgetError
from .attention_trace import AttentionTrace, trace_model, trace_task

__all__ = ["AttentionCapture", "AttentionExplorer", "AttentionTrace", "CaptureBudgetError", "trace_model",
           "trace_task"]


def __getattr__(name: str):
    # ipywidgets comes with the notebooks extra; import the explorer only when it is asked for.
    if name == "AttentionExplorer":
        from .attention_explorer import AttentionExplorer

        return AttentionExplorer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
