"""Processor -> model -> generate -> decode, on a real photo, for every encoder choice."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest
import torch

from dsvl_lab.model import DSVLModel
from dsvl_lab.processor import DSVLProcessor

PHOTO = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


@pytest.mark.parametrize("name", ["dsvl-micro-siglip", "dsvl-micro-sam", "dsvl-micro-hybrid"])
def test_a_photo_and_a_conversation_train_and_generate(name):
    torch.manual_seed(0)
    model = DSVLModel.from_name(name)
    processor = DSVLProcessor.from_config(model.config)
    conversations = [
        [{"role": "user", "content": "<image_placeholder>Who is this?", "images": [PHOTO]},
         {"role": "assistant", "content": "Grace Hopper."}],
        [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hi"}],
    ]
    batch = processor(conversations)
    assert batch["pixel_values"].shape == (1, 3, model.config.image_size, model.config.image_size)
    out = model(**batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)

    prompt = processor([[{"role": "user", "content": "<image_placeholder>Who is this?", "images": [PHOTO]}]],
                       add_generation_prompt=True, return_labels=False)
    new_tokens = model.eval().generate(**prompt, max_new_tokens=5)
    assert new_tokens.shape[0] == 1 and 1 <= new_tokens.shape[1] <= 5
    assert isinstance(processor.decode(new_tokens[0]), str)
