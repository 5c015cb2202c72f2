"""One line of a sample file: bytes -> a checked JSON object -> a :class:`Sample`.

Python's ``json.loads`` lets through what a sample file must not hold (duplicate keys, NaN, a
20-digit "seed") and crashes on deep nesting, so :func:`parse_record` refuses those first; then
:func:`check_record` checks the object's fields, their types and the conversation's turns. Each
problem is a :class:`~.errors.DataError` whose ``key`` names the field (``"qa[0].options"``).
"""
from __future__ import annotations

import json
import math
import reprlib
from typing import Any

from PIL import Image

from ..tasks import QA, Sample
from .errors import DataError

REQUIRED_FIELDS = ("image",)
MAX_NESTING = 16             # a sample nests 4 deep (record > qa > item > options); more is garbage
MAX_INT_DIGITS = 19          # a seed fits in 64 bits; refuse longer numbers before Python converts them
TEXT_FIELDS = ("image", "id", "family", "detail", "caption")
QA_TEXT_FIELDS = ("question", "answer", "kind", "detail")
ROLES = ("system", "user", "assistant")


def parse_record(raw: bytes) -> Any:
    """Bytes -> the JSON value, refusing what ``json.loads`` would let through or crash on."""
    try:
        text = raw.decode("utf-8-sig")  # -sig: a byte-order mark some editors put first is not an error
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8: byte {error.start} cannot be decoded; re-save the file as UTF-8",
                        key="line") from None
    try:
        return json.loads(text, object_pairs_hook=unique_keys, parse_constant=refuse_constant,
                          parse_int=bounded_int, parse_float=finite_float)
    except DataError:
        raise
    except json.JSONDecodeError as error:
        raise DataError(f"not valid JSON: {error.msg} at column {error.colno}; each line must be one complete "
                        f"JSON object", key="line", reason="not valid JSON") from None
    except RecursionError:  # json's parser recurses once per level; thousands of "[" exhaust the stack
        raise DataError(f"nested too deeply: a sample nests a few levels, at most {MAX_NESTING}; this line is "
                        f"garbage or an attack", key="line", reason="nested too deeply") from None


def unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """json's object hook: a key given twice is an error (json.loads would silently keep the last)."""
    record: dict = {}
    for key, value in pairs:
        if key in record:
            raise DataError("duplicate key: given twice in one object; keep one", key=key)
        record[key] = value
    return record


def refuse_constant(name: str) -> float:
    """json's hook for NaN / Infinity / -Infinity: refused (they are not JSON)."""
    raise DataError(f"not a number: {name} is not valid JSON (Python's json accepts it); write a finite "
                    f"number", key="line", reason="not a number")


def bounded_int(digits: str) -> int:
    """json's hook for integers: refuse one too long before Python converts it (the cost grows with length)."""
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise DataError(f"number too long: an integer of {len(digits.lstrip('-'))} digits (at most "
                        f"{MAX_INT_DIGITS}); write a 64-bit integer", key="line", reason="number too long")
    return int(digits)


def finite_float(text: str) -> float:
    """json's hook for decimals: refuse one that overflows to infinity (``1e999``)."""
    value = float(text)
    if not math.isfinite(value):
        raise DataError(f"not a number: {text[:40]} overflows to infinity; write a finite number", key="line",
                        reason="not a number")
    return value


def check_record(record: Any) -> dict:
    """The whole line: an object, not too deep, with an image and something to learn from, all typed."""
    if not isinstance(record, dict):
        raise DataError(f"not a JSON object: got {json_type(record)}; each line must be one {{...}} sample",
                        key="line", reason="not an object")
    if nesting_depth(record) > MAX_NESTING:
        raise DataError(f"nested too deeply: more than {MAX_NESTING} levels; a sample nests a few", key="line",
                        reason="nested too deeply")
    for name in REQUIRED_FIELDS:
        if name not in record:
            raise DataError(f"missing field: every sample needs {name!r}", key=name)
    if not any(name in record for name in ("qa", "conversation", "caption")):
        raise DataError("missing field: a sample needs at least one of them", key="qa, conversation or caption")
    for name in TEXT_FIELDS:
        if name in record:
            check_text(record[name], name)
    if not record["image"]:
        raise DataError("empty path: give the image file relative to the sample file", key="image",
                        reason="bad path")
    if "seed" in record:
        check_integer(record["seed"], "seed")
    for index, item in enumerate(check_list(record.get("qa", []), "qa")):
        check_qa(item, f"qa[{index}]")
    if "conversation" in record:
        check_conversation(record["conversation"])
    return record


def nesting_depth(value: Any) -> int:
    """How many lists/objects deep ``value`` goes (iterative: a deep value cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_qa(item: Any, key: str) -> None:
    """One qa item: an object with string question and answer; options, if given, hold the answer."""
    check_object(item, key)
    for name in ("question", "answer"):
        if name not in item:
            raise DataError("missing field: each qa item needs 'question' and 'answer'", key=f"{key}.{name}")
    for name in QA_TEXT_FIELDS:
        if name in item:
            check_text(item[name], f"{key}.{name}")
    options = item.get("options")
    if options is None:
        return
    for index, option in enumerate(check_list(options, f"{key}.options")):
        check_text(option, f"{key}.options[{index}]")
    if options and item["answer"] not in options:
        raise DataError(f"bad qa item: answer {item['answer']!r} is not among its options {reprlib.repr(options)}; "
                        f"add it to the options", key=f"{key}.options", reason="answer not in options")


def check_conversation(conversation: Any) -> None:
    """Turns with a role and string content; an optional system turn first, then user, assistant, user, ..."""
    if not check_list(conversation, "conversation"):
        raise DataError("bad conversation: expected a non-empty list of turns", key="conversation")
    expected = "user"
    for index, turn in enumerate(conversation):
        key = f"conversation[{index}]"
        check_object(turn, key)
        for name in ("role", "content"):
            if name not in turn:
                raise DataError(f"missing field: turn {index} needs 'role' and 'content'", key=f"{key}.{name}")
        role = check_text(turn["role"], f"{key}.role")
        check_text(turn["content"], f"{key}.content")
        if "images" in turn:  # the sample's one image is its "image" field, checked and confined above
            raise DataError("not allowed in a sample file: the image comes from the sample's 'image' field; put "
                            "<image_placeholder> in the content where it goes and drop 'images'",
                            key=f"{key}.images", reason="bad conversation")
        if role == "system" and index == 0:
            continue
        if role != expected:
            allowed = f"{expected!r}" + (" (or 'system', first only)" if index == 0 else "")
            raise DataError(f"roles do not alternate: turn {index} is {role!r}, expected {allowed}",
                            key=f"{key}.role")
        expected = "assistant" if expected == "user" else "user"


def check_text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"wrong type: expected a string, got {json_type(value)} ({reprlib.repr(value)})", key=key)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:  # "\ud800" is valid JSON but not valid Unicode
        raise DataError(f"bad text: character {error.start} is a lone surrogate {value[error.start]!r}, not valid "
                        f"Unicode; fix the \\u escape", key=key) from None
    return value


def check_integer(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):  # bool is an int subclass: true is not a seed
        raise DataError(f"wrong type: expected an integer, got {json_type(value)} ({reprlib.repr(value)})",
                        key=key)
    return value


def check_list(value: Any, key: str) -> list:
    if not isinstance(value, list):
        raise DataError(f"wrong type: expected a list, got {json_type(value)} ({reprlib.repr(value)})", key=key)
    return value


def check_object(value: Any, key: str) -> dict:
    if not isinstance(value, dict):
        raise DataError(f"wrong type: expected an object {{...}}, got {json_type(value)} ({reprlib.repr(value)})",
                        key=key)
    return value


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages a user who wrote JSON understands."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "an integer",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def to_sample(record: dict, image: Image.Image) -> Sample:
    """A checked line as a :class:`Sample` (options default to the answer alone)."""
    qa = [QA(question=item["question"], answer=item["answer"], options=list(item.get("options") or [item["answer"]]),
             kind=item.get("kind", ""), detail=item.get("detail", "coarse")) for item in record.get("qa", [])]
    return Sample(family=record.get("family", "custom"), detail=record.get("detail", "coarse"), image=image,
                  caption=record.get("caption", ""), qa=qa, seed=record.get("seed", -1),
                  meta={"id": record.get("id", "")})
