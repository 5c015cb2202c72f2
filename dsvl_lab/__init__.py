"""dsvl_lab: a workbench for DeepSeek-VL."""
