"""AttentionExplorer: an ipywidgets box to browse an attention trace, with stock controls only.

Python keeps all state. Every control change redraws a matplotlib figure and puts its PNG bytes
into a fixed-size ``ipywidgets.Image``: no custom JavaScript and nothing fetched from a CDN, so it
renders the same in JupyterLab 4, Notebook 7 and VS Code (bertviz's custom JavaScript often shows
a blank cell in JupyterLab, bertviz issues #63 and #99).

    explorer = AttentionExplorer(model, image, "What is written?")   # traces the model once
    explorer = AttentionExplorer.from_trace("data_samples/traces/foundation-chart.safetensors")
    explorer.compare("runs/demo/stage3/trace.safetensors")           # two traces side by side

Controls: component (llm / siglip / sam), view, layer, head (one head, mean or max over heads),
query (a text token, the mean over the answer, or a vision patch), colormap, normalisation and
overlay strength (the heatmap's opacity over the picture).
"""
from __future__ import annotations

from pathlib import Path

import ipywidgets as widgets

from . import attention_plots as render
from .attention_trace import AttentionTrace, trace_model, trace_task
from .static_picture import StaticPicture

VIEWS = {"llm": ("token → image", "token × token", "image mass (layer × head)"), "siglip": ("patch → patch",),
         "sam": ("patch → patch",)}
PANEL_INCHES = (6.0, 4.6)  # one panel; the PNG is a fixed 600 x 460 pixels per trace
DPI = 100


def as_trace(source, image=None, prompt=None, **trace_kwargs) -> AttentionTrace:
    """A trace from a trace, a trace file, or a model (traced here on ``image`` and ``prompt``)."""
    if isinstance(source, AttentionTrace):
        return source
    if isinstance(source, (str, Path)):
        return AttentionTrace.load(source)
    if not hasattr(source, "attention_layers"):
        raise TypeError(f"AttentionExplorer takes a DSVLModel, an AttentionTrace or a trace file; "
                        f"got {type(source).__name__}")
    if image is None:
        return trace_task(source, prompt=prompt, **trace_kwargs)
    return trace_model(source, image, prompt or "Describe the image.", **trace_kwargs)


def corresponding_query(primary: AttentionTrace, other: AttentionTrace, query):
    """The same query in another trace: the same segment and offset in it (answers may differ in length)."""
    if query == "answer" or query is None:
        return query
    segment = primary.segments[int(query)]
    offset = int(query) - primary.positions(segment)[0]
    positions = other.positions(segment)
    return positions[min(offset, len(positions) - 1)] if positions else len(other.tokens) - 1


class AttentionExplorer(StaticPicture, widgets.VBox):
    """Browse one trace, or several side by side (see :meth:`compare`); it is itself a displayable widget."""

    def __init__(self, model_or_trace, image=None, prompt=None, *, others=(), **trace_kwargs) -> None:
        self.traces = [as_trace(model_or_trace, image, prompt, **trace_kwargs)] + [as_trace(o) for o in others]
        self.trace = self.traces[0]
        self._quiet = False
        style = {"description_width": "initial"}
        self.component = widgets.Dropdown(options=self.trace.components, description="component", style=style)
        self.view = widgets.Dropdown(description="view", style=style)
        self.layer = widgets.Dropdown(description="layer", style=style)
        self.head = widgets.Dropdown(description="head", style=style)
        self.query = widgets.Dropdown(description="query", style=style, layout=widgets.Layout(width="320px"))
        self.colormap = widgets.Dropdown(options=render.COLORMAPS, description="colormap", style=style)
        self.norm = widgets.Dropdown(options=render.NORMS, value="linear", description="normalisation", style=style)
        self.alpha = widgets.FloatSlider(value=0.6, min=0.0, max=1.0, step=0.05, description="overlay", style=style)
        width, height = round(PANEL_INCHES[0] * DPI * len(self.traces)), round(PANEL_INCHES[1] * DPI)
        self.image = widgets.Image(format="png", layout=widgets.Layout(width=f"{width}px", height=f"{height}px"))
        self.caption = widgets.HTML()
        self._fill_options()
        for control in self.controls:
            control.observe(self._changed, names="value")
        rows = [widgets.HBox([self.component, self.view, self.layer, self.head]),
                widgets.HBox([self.query, self.colormap, self.norm, self.alpha])]
        super().__init__(rows + [self.image, self.caption])
        self.render()

    @classmethod
    def from_trace(cls, path, **kwargs) -> "AttentionExplorer":
        """Instructor mode: a saved trace, no model needed."""
        return cls(AttentionTrace.load(path), **kwargs)

    def compare(self, other) -> "AttentionExplorer":
        """A new explorer showing this trace and ``other`` (a trace, a file or a model) side by side,
        driven by one set of controls (e.g. after stage 1 vs after stage 3)."""
        twin = AttentionExplorer(self.trace, others=[other])
        twin.set_state(self.state())
        return twin

    # ------------------------------------------------------------------ state
    @property
    def controls(self) -> list:
        return [self.component, self.view, self.layer, self.head, self.query, self.colormap, self.norm, self.alpha]

    def state(self) -> dict:
        return {c.description: c.value for c in self.controls}

    def set_state(self, state: dict) -> None:
        """Set several controls at once, one render at the end."""
        self._quiet = True
        try:
            for control in self.controls:
                if control.description in state:
                    if control is self.component:
                        control.value = state["component"]
                        self._fill_options()
                    elif control.value != state[control.description]:
                        control.value = state[control.description]
        finally:
            self._quiet = False
        self.render()

    @property
    def png(self) -> bytes:
        """The PNG bytes currently shown."""
        return bytes(self.image.value)

    # ------------------------------------------------------------------ options that depend on the component
    def _fill_options(self) -> None:
        """Views, layers, heads and queries of the chosen component (keeping the current value when still valid)."""
        trace, component = self.trace, self.component.value
        quiet, self._quiet = self._quiet, True
        try:
            set_options(self.view, VIEWS[component])
            layers = trace.layers(component)
            if component == "llm" and rollout_ready(trace):
                layers = layers + ["rollout"]
            set_options(self.layer, layers)
            set_options(self.head, ["mean", "max"] + list(trace.heads[trace.layers(component)[0]]))
            set_options(self.query, query_options(trace, component), default=self._default_query(component))
        finally:
            self._quiet = quiet

    def _default_query(self, component: str):
        if component == "llm":
            return "answer"
        grid = self.trace.grid_of(self.trace.layers(component)[0])
        return (grid * grid) // 2 + grid // 2  # a patch near the centre

    def _changed(self, change) -> None:
        if self._quiet:
            return
        if change["owner"] is self.component:
            self._fill_options()
        self.render()

    # ------------------------------------------------------------------ drawing
    def render(self) -> None:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(self.traces), figsize=(PANEL_INCHES[0] * len(self.traces), PANEL_INCHES[1]),
                                 squeeze=False)
        for ax, trace in zip(axes[0], self.traces):
            self._draw(ax, trace)
        fig.tight_layout()
        self.image.value = render.figure_png(fig, dpi=DPI)
        self.caption.value = self._caption()

    def _draw(self, ax, trace: AttentionTrace) -> None:
        query = corresponding_query(self.trace, trace, self.query.value) if self.component.value == "llm" \
            else self.query.value
        head, layer, view = self.head.value, self.layer.value, self.view.value
        style = dict(cmap=self.colormap.value)
        try:
            if view == "image mass (layer × head)":
                render.plot_image_mass(trace, query, ax=ax, highlight=(layer, head), **style)
            elif view == "token × token":
                render.plot_token_matrix(trace, layer, head, norm=self.norm.value, ax=ax, query=query, **style)
            elif self.component.value == "llm":
                render.plot_token_to_image(trace, layer, head, query, norm=self.norm.value, alpha=self.alpha.value,
                                           ax=ax, **style)
            else:
                render.plot_patch_attention(trace, layer, head, query, norm=self.norm.value, alpha=self.alpha.value,
                                            ax=ax, **style)
        except (ValueError, KeyError, IndexError) as error:  # e.g. a layer the other trace did not capture
            ax.text(0.5, 0.5, f"cannot draw this for {trace.label()}:\n{error}", ha="center", va="center",
                    wrap=True, fontsize=9, transform=ax.transAxes)
            ax.set_axis_off()
        if len(self.traces) > 1:
            ax.set_title(f"[{trace.label()}] " + ax.get_title(), fontsize=9)

    def _caption(self) -> str:
        parts = []
        for trace in self.traces:
            meta = trace.meta
            parts.append(f"<b>{trace.label()}</b>: {meta.get('model', '')} · prompt <i>{meta.get('prompt', '')}</i> · "
                         f"answer <i>{meta.get('answer', '')}</i>")
        return "<br>".join(parts)


def set_options(dropdown, options, default=None) -> None:
    """Replace a dropdown's options, keeping its value if it is still one of them."""
    values = [o[1] if isinstance(o, tuple) else o for o in options]
    current = dropdown.value
    dropdown.options = options
    dropdown.value = current if current in values else (default if default in values else values[0])


def query_options(trace: AttentionTrace, component: str) -> list[tuple[str, object]]:
    """LLM: the answer mean and each text token after the image (earlier ones cannot see it); vision: every patch."""
    if component == "llm":
        start = trace.image_positions[-1] + 1 if trace.image_positions else 0
        return [("answer tokens (mean)", "answer")] + [
            (f"{i}: {trace.tokens[i]!r} ({trace.segments[i]})", i) for i in range(start, len(trace.tokens))]
    grid = trace.grid_of(trace.layers(component)[0])
    return [(f"patch ({p // grid}, {p % grid})", p) for p in range(grid * grid)]


def rollout_ready(trace: AttentionTrace) -> bool:
    try:
        trace.rollout("llm")
    except ValueError:
        return False
    return True
