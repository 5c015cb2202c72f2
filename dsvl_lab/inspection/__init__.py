"""Looking inside the model: shape traces, parameter breakdowns and the figures the notebooks show.

``shapes.py`` holds the helpers of notebook 01 (the model tour): forward-hook shape traces (on
real tensors or on the meta device, so the released 7B can be traced without memory), parameter
counts per component, and plain matplotlib renderers for image views, label masks and attention.
"""
