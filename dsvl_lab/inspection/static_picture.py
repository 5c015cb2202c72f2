"""A widget that also carries its last picture as a plain PNG, for readers without a kernel.

A committed notebook stores a widget's output as ``application/vnd.jupyter.widget-view+json``. With
a kernel (or a trusted notebook with saved widget state) JupyterLab draws the live widget; an
untrusted notebook (any notebook you did not run yourself) may only use safe renderers, so it fell
back to the text repr (``AttentionExplorer(children=(HBox(...``), and GitHub shows nothing at all.
Adding the widget's current picture as ``image/png`` to the same output gives those readers the
picture, while a live JupyterLab still prefers the widget.
"""
from __future__ import annotations

import base64


class StaticPicture:
    """Mix into an ipywidgets box whose ``image`` (an ``ipywidgets.Image``) holds its current PNG."""

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if getattr(self, "image", None) is not None and self.image.value:
            data["image/png"] = base64.b64encode(bytes(self.image.value)).decode("ascii")
        return bundle
