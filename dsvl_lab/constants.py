"""Constants shared across layers, defined once at the bottom so every layer can import them.

Only values that more than one layer needs live here; a constant used by one module stays in it.
"""

# The label value the cross-entropy loss skips: PyTorch's ``ignore_index`` default and the original
# DeepSeek-VL code's ``ignore_id``. The processor writes it (prompt, image and padding positions),
# the model's loss skips it, and the evaluation masks it out.
IGNORE_INDEX = -100

# How a stage's evaluation asks its questions: "plain" (``Question: q Answer:``, stages 1-2, before
# SFT) or "chat" (the "deepseek" chat template, stage 3). A stage spec validates its choice against
# this and the VL evaluation implements both.
PROMPT_FORMATS = ("plain", "chat")
