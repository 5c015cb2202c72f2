"""Checking a foreign ``config.json``: the helpers the transformers and original readers share.

Each reader lists the keys it uses, section by section, with the check each value needs
(:data:`~dsvl_lab.convert.hf_config.HF_KEYS`, :data:`~dsvl_lab.convert.original.ORIGINAL_KEYS`).
A kind is one of :func:`dsvl_lab.config.value_problem`'s; a trailing ``"?"`` allows null;
``value_problem`` does not know ``"integer"``, which is checked where it is read, nor ``"any"``.
Other keys are the bookkeeping of transformers or of the original code (``architectures``,
``torch_dtype``, ``select_feature``, ...) and are ignored, as those libraries ignore keys they do not
use; but a key that looks like a misspelling of one read here is refused, because the value it meant
to set would silently fall back to a default.

Errors found once our config is built (a head count that does not divide the width, the parameter
ceiling, ...) name our config's key (``llm.num_heads``); :func:`file_key` spells it as the file does,
through each reader's renames table.
"""
from __future__ import annotations

from ..config import did_you_mean, value_problem
from ..errors import ConfigError

# Our LLMConfig's names as transformers' LlamaConfig spells them, which both files use for the LLM
# (the transformers port's text_config and the original's language_config are LLaMA configs).
LLAMA_NAMES = {"num_layers": "num_hidden_layers", "num_heads": "num_attention_heads",
               "num_kv_heads": "num_key_value_heads"}


def dig(data: dict, dotted: str):
    """``data["a"]["b"]`` for ``"a.b"`` (``data`` itself for ``""``); None where a step is missing."""
    for part in filter(None, dotted.split(".")):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def check_keys(data: dict, schema: dict[str, dict[str, str]], source) -> None:
    """Check the values of the keys a reader uses, and refuse near-misses of them (see the module docstring)."""
    if not isinstance(data, dict):
        raise ConfigError(f"must hold a JSON object, got {type(data).__name__}", source=source)
    for section, kinds in schema.items():  # parents come first, so a section is a mapping when it is read
        part = dig(data, section)
        if not isinstance(part, dict):
            continue
        for key, value in part.items():
            where = f"{section}.{key}" if section else str(key)
            if key not in kinds:
                hint = did_you_mean(key, kinds, cutoff=0.85)
                if hint:
                    raise ConfigError(f"unknown key{hint}", source=source, key=where)
                continue
            kind = kinds[key]
            if kind.endswith("?"):
                if value is None:
                    continue
                kind = kind[:-1]
            problem = value_problem(kind, value)
            if problem:
                raise ConfigError(problem, source=source, key=where)


def require(data: dict, keys: list[str], source) -> None:
    """Each dotted key is present (the readers have no default for them)."""
    for key in keys:
        if dig(data, key) is None:
            raise ConfigError("missing: this reader needs it", source=source, key=key)


def file_key(error: ConfigError, renames: dict[str, str]) -> ConfigError:
    """The error with our config's key (``llm.num_heads``) spelled as the file does (``text_config....``)."""
    key = error.key
    if key in renames:
        key = renames[key]
    elif key and key.split(".")[0] in renames:
        head, _, rest = key.partition(".")
        key = f"{renames[head]}.{rest}"
    return ConfigError(error.problem, source=error.source, key=key)
