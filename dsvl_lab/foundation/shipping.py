"""A part's weights as they ship: bf16 safetensors, exported with checksums, loaded back checked, copied in.

``export_part`` writes ``out/<part>.safetensors``; ``ship`` copies a finished run's files into
``data_samples/foundation/<size>/`` and rewrites the index; ``load_part_weights`` loads a shipped
file into a module after checking it against the checksum its card records.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..artifacts import file_sha256, tensor_checksum
from ..atomic import atomic_write
from .card import write_index
from .recipe import FOUNDATION_DIR, STORE_DTYPE, FoundationError


def stored_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The part's tensors as they are stored: floating tensors in ``STORE_DTYPE``."""
    return {name: (t.detach().to(STORE_DTYPE) if t.is_floating_point() else t.detach()).contiguous()
            for name, t in module.state_dict().items()}


def rounded_to_storage(module: nn.Module) -> nn.Module:
    """Round the module's weights through the storage dtype, so evaluation sees what ships."""
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(STORE_DTYPE).to(tensor.dtype))
    return module


def export_part(module: nn.Module, path: Path) -> dict[str, Any]:
    """Write the part to ``path`` (safetensors, bf16, atomically); return its size and checksums."""
    from safetensors.torch import save as save_bytes

    state = stored_state(module)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = save_bytes(state, metadata={"format": "pt"})
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(payload))
    return {"file": path.name, "bytes": path.stat().st_size, "file_sha256": file_sha256(path),
            "tensor_sha256": tensor_checksum(state), "dtype": str(STORE_DTYPE).replace("torch.", ""),
            "parameters": sum(t.numel() for t in state.values())}


def ship(out: Path, part: str, size: str, root: Path = FOUNDATION_DIR) -> Path:
    """Copy a finished run's weights and card into the foundation folder (each file atomically)."""
    target = root / size
    target.mkdir(parents=True, exist_ok=True)
    for name in (f"{part}.safetensors", f"{part}_text.safetensors", f"{part}.json", f"{part}.md", f"{part}_curve.png"):
        source = out / name
        if source.is_file():
            atomic_write(target / name, lambda tmp, s=source: shutil.copyfile(s, tmp))
    write_index(root)
    return target


def load_part_weights(module: nn.Module, path: Path, expected: dict[str, Any] | None = None) -> None:
    """Load a shipped part into ``module`` (exact names and shapes), checking the recorded checksum."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise FoundationError(f"foundation weights {path} are missing; make them with `dsvl-lab pretrain "
                              f"{path.stem} --preset dsvl-{path.parent.name}-hybrid --out runs/{path.stem} --ship`")
    state = load_file(str(path))
    if expected is not None and tensor_checksum(state) != expected["tensor_sha256"]:
        raise FoundationError(f"{path} does not match the checksum in its model card ({path.stem}.json): the file "
                              f"was altered or belongs to another run; restore it (git checkout) or re-ship the run")
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    misshapen = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or misshapen:
        raise FoundationError(f"{path} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}, "
                              f"misshapen {misshapen[:5]}; was it made for another size?")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
