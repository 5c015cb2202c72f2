"""Model folders: our own format, and the one loader every format goes through.

Our format is two files: ``model.safetensors`` (our parameter names, which are the original
DeepSeek-VL checkpoint's names under ``vision_model`` / ``aligner`` / ``language_model``) and
``dsvl_config.json`` (:meth:`DSVLConfig.save`). :func:`save_pretrained` writes them,
:func:`load_pretrained` reads them (``DSVLModel.save_pretrained`` / ``DSVLModel.from_pretrained``).

Folders of the transformers port (``config.json`` with model_type ``deepseek_vl[_hybrid]``) and of
the original release (model_type ``multi_modality``) go through the same loader, but what they
need beyond it (their key maps and config readers) is interop and lives in :mod:`dsvl_lab.convert`,
which registers them here with :func:`register_format` when it is imported. This module imports
nothing above the model, so the model layer never depends on the interop layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from ..atomic import atomic_write
from ..config import DSVLConfig, read_config_json
from ..errors import ConfigError, InputError

if TYPE_CHECKING:  # only for annotations: dsvl.py imports this module
    from .dsvl import DSVLModel

OUR_CONFIG = "dsvl_config.json"
WEIGHTS = "model.safetensors"

# model_type of a folder's config.json -> the name of its format.
MODEL_TYPES = {"deepseek_vl": "hf", "deepseek_vl_hybrid": "hf", "multi_modality": "original"}
FORMAT_NAMES = {"hf": "transformers DeepseekVL", "original": "original DeepSeek-VL"}


@dataclass(frozen=True)
class FolderFormat:
    """What the loader needs to read a folder in a format other than ours."""

    read_config: Callable[[Path], DSVLConfig]  # the folder -> our checked config (reads no weights)
    state_to_ours: Callable[[dict, nn.Module], dict]  # (their tensors, our model) -> our tensors


# Filled by dsvl_lab.convert on import: {"hf": ..., "original": ...}.
FOLDER_FORMATS: dict[str, FolderFormat] = {}


def register_format(name: str, folder_format: FolderFormat) -> None:
    """Let the loader read folders of format ``name`` (see :data:`MODEL_TYPES`)."""
    FOLDER_FORMATS[name] = folder_format


def folder_format(fmt: str, folder: Path) -> FolderFormat:
    """The registered reader of a format, or an error saying which import registers it."""
    if fmt not in FOLDER_FORMATS:
        raise ValueError(f"{folder} is a {FORMAT_NAMES.get(fmt, fmt)} folder, whose reader is in dsvl_lab.convert: "
                         f"`import dsvl_lab.convert` first (it registers the reader), or load it with "
                         f"dsvl_lab.convert.load_pretrained")
    return FOLDER_FORMATS[fmt]


def detect_format(folder: Path) -> str:
    """'ours', 'hf' or 'original', from the config files present."""
    if (folder / OUR_CONFIG).exists():
        return "ours"
    config_file = folder / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{folder} has neither {OUR_CONFIG} nor config.json: is it a model folder?")
    model_type = read_config_json(config_file).get("model_type")
    if model_type in MODEL_TYPES:
        return MODEL_TYPES[model_type]
    raise ConfigError(f"unknown model_type {model_type!r}; expected deepseek_vl, deepseek_vl_hybrid "
                      f"(transformers) or multi_modality (original DeepSeek-VL)", source=config_file, key="model_type")


def folder_config(folder: Path, fmt: str) -> DSVLConfig:
    """The DSVLConfig a model folder's config file describes (reads no weights)."""
    if fmt == "ours":
        return DSVLConfig.load(folder / OUR_CONFIG)
    return folder_format(fmt, folder).read_config(folder)


# ============================================================================ weights
def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except Exception as error:  # safetensors' own errors do not name the file
        raise ValueError(f"cannot read weights file {path}: {error}. Is it complete? Re-copy or re-save it") from error


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a folder: model.safetensors, sharded safetensors (with an index), or pytorch_model.bin."""
    index = folder / "model.safetensors.index.json"
    load = _load_safetensors
    if index.exists():
        weight_map = read_config_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise InputError("must map tensor names to shard file names", source=index, key="weight_map")
        files = [folder / shard for shard in sorted(set(weight_map.values()))]
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        files = sorted(folder.glob("pytorch_model*.bin"))
        load = lambda file: torch.load(file, map_location="cpu", weights_only=True)  # noqa: E731
    if not files:
        raise FileNotFoundError(f"no weights in {folder}: expected model.safetensors, sharded *.safetensors with "
                                f"model.safetensors.index.json, or pytorch_model.bin")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load(file))
    return state


def load_state_checked(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict that lists every missing, unexpected and misshapen tensor before failing."""
    expected = {k: v.shape for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    misshapen = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k])}"
                       for k in set(state) & set(expected) if state[k].shape != expected[k])
    if missing or extra or misshapen:
        lines = [f"cannot load {source}:"]
        for title, items in (("missing", missing), ("unexpected", extra), ("misshapen", misshapen)):
            if items:
                lines.append(f"  {len(items)} {title}: " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
        lines.append("  check that the folder matches the config (preset, encoder, sizes)")
        raise ValueError("\n".join(lines))
    model.load_state_dict(state, strict=True, assign=True)


def rebuild_buffers(model: nn.Module) -> None:
    """Non-persistent buffers (RoPE frequencies, normalisation stats) were created on the meta device."""
    device = next(model.parameters()).device
    for module in model.modules():
        if hasattr(module, "reset_buffers"):
            module.reset_buffers(device)


# ============================================================================ folders
def load_pretrained(path: str | Path, config: DSVLConfig | str | None = None, dtype: torch.dtype | None = None,
                    pixel_input: str = "raw", *, model_class: type[DSVLModel]) -> DSVLModel:
    """Load a local model folder in our, the transformers or the original DeepSeek-VL format.

    ``config`` (a DSVLConfig or preset name) overrides the folder's config, e.g. for an original
    checkpoint of a tower this loader does not know. ``pixel_input`` defaults to "raw" so the model
    works with :class:`DSVLProcessor` images; pass "normalized" for transformers-processor inputs.
    ``model_class`` is the class to build (``DSVLModel.from_pretrained`` passes its own class).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder. Weights are loaded from a local folder only "
                                f"(nothing is downloaded); point to the checkpoint folder you already have")
    fmt = detect_format(folder)
    reader = None if fmt == "ours" else folder_format(fmt, folder)  # fails before any work if unregistered
    if isinstance(config, str):
        config = DSVLConfig.from_name(config)
    if config is None:
        config = folder_config(folder, fmt)  # checked, ceiling included, before anything is built
    if fmt != "ours" or pixel_input != "raw":
        config = config.replace(pixel_input=pixel_input)
    with torch.device("meta"):  # no second copy of a 7B: the file's tensors are assigned below
        model = model_class(config)
    state = read_weights(folder)
    if reader is not None:
        state = reader.state_to_ours(state, model)
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    load_state_checked(model, state, f"{folder} ({fmt} format)")
    rebuild_buffers(model)
    return model.eval()


def save_pretrained(model: DSVLModel, path: str | Path) -> None:
    """Write ``model.safetensors`` and ``dsvl_config.json``; each file appears whole or not at all."""
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(folder / WEIGHTS, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    atomic_write(folder / OUR_CONFIG, lambda tmp: model.config.save(tmp))
