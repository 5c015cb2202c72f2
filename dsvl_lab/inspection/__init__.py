"""Looking inside the model: shapes, parameters, images, tokens and attention, one module per concept.

The model and its data:
``shapes`` (forward-hook shape traces, on real tensors or on the meta device, so the released 7B
can be traced without memory), ``parameters`` (parameters per component and their bar chart; the
counting and the tables of ``dsvl-lab presets`` are in ``model_tables``), ``images`` (the high-res
and low-res views each tower sees, zooms, contact sheets), ``answer_regions`` (where a fine
sample's answer is drawn), ``tokens`` (the one token labeller: image / pad / supervised / prompt
tokens and the system / image / user / answer segments, with their colours and the labelled token
strip), ``data_mixing`` (stage data, modality warm-up and grouping), ``foundation_views`` (the
shipped foundation parts: learning curves, probes, retrieval) and ``training_views`` (the losses
and language share of a pipeline run).

Attention:
``attention_capture`` (:class:`AttentionCapture`: record chosen layers and heads within a memory
budget), ``attention_trace`` (:class:`AttentionTrace`: one file with the weights, token labels,
segments, grid geometry and the image; aggregations), ``attention_plots`` (every static attention
figure, the one token x token matrix among them), ``attention_explorer`` (:class:`AttentionExplorer`,
an ipywidgets box, with ``static_picture`` giving it a PNG for readers without a kernel) and
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
