"""The chat template: a conversation -> prompt text in the original's "deepseek" sft_format.

The original conversation.py writes (docs/deepseek_vl_facts.md section 2.7)::

    {system prompt}\\n\\nUser: {question}\\n\\nAssistant: {answer}<｜end▁of▁sentence｜>User: ...

and strips the whole string. :func:`chat_segments` writes the same text, cut into
:class:`Segment` pieces where the labels change: only the answers (and the EOS after each)
are ``supervised``, so the processor can give them labels and -100 to everything else. The
original repository has no label code; this is the workbench's addition for fine-tuning.

A conversation is a list of ``{"role", "content", "images"?}`` dicts; :func:`parse_conversation`
checks it and names the message at fault.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from .errors import ProcessorError

# The "deepseek" sft_format of the original conversation.py (docs/deepseek_vl_facts.md 2.7).
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. You are able to understand the visual content "
    "that the user provides, and assist the user with a variety of tasks using natural language."
)
USER, ASSISTANT, SYSTEM = "User", "Assistant", "system"
ROLES = {"user": USER, "assistant": ASSISTANT, "system": SYSTEM}
TURN_SEPARATOR = "\n\n"  # after the system prompt and after each user turn; EOS ends assistant turns


@dataclass(frozen=True)
class Message:
    role: str  # "User", "Assistant" or "system"
    content: str
    images: list = field(default_factory=list)


@dataclass(frozen=True)
class Segment:
    """A piece of the prompt text; ``supervised`` pieces (answers and their EOS) get labels."""

    text: str
    supervised: bool


def parse_conversation(conversation: Sequence[dict]) -> list[Message]:
    """Check a conversation (a list of ``{"role", "content", "images"?}`` dicts) and normalise it."""
    if isinstance(conversation, dict) or not isinstance(conversation, (list, tuple)):
        raise ProcessorError("a conversation is a list of message dicts, e.g. "
                             "[{'role': 'user', 'content': 'Hi'}]; got a " + type(conversation).__name__)
    messages = [parse_message(i, m) for i, m in enumerate(conversation)]
    if not any(m.role != SYSTEM for m in messages):
        raise ProcessorError("empty conversation: it needs at least one user or assistant message")
    for i, m in enumerate(messages):
        if m.role == SYSTEM and i != 0:
            raise ProcessorError(f"message {i} is a system message; a system message must come first")
        last = i == len(messages) - 1
        if m.role == ASSISTANT and not m.content and not last:
            raise ProcessorError(f"message {i} (assistant) is empty; only the last assistant message may be "
                                 f"empty (it is then the open 'Assistant:' turn for generation)")
    return messages


def parse_message(index: int, message: Any) -> Message:
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise ProcessorError(f"message {index} must be a dict with 'role' and 'content' (and optional "
                             f"'images'); got {message!r:.80}")
    role = ROLES.get(str(message["role"]).lower())
    if role is None:
        raise ProcessorError(f"unknown role {message['role']!r} in message {index}; "
                             f"use 'user', 'assistant' or 'system'")
    if not isinstance(message["content"], str):
        raise ProcessorError(f"message {index}: content must be a string, got {type(message['content']).__name__}")
    images = message.get("images")
    if images is None:
        images = []
    elif not isinstance(images, (list, tuple)):
        images = [images]  # a single image given without a list
    return Message(role, message["content"], list(images))


def chat_segments(messages: list[Message], *, system_prompt: str, eos_token: str,
                  add_generation_prompt: bool) -> list[Segment]:
    """Write the conversation in the original "deepseek" sft_format, cut where the labels change.

    ``system + "\\n\\n"``, then ``"User: " + content + "\\n\\n"`` and
    ``"Assistant: " + answer + EOS`` per turn; an open turn is ``"Assistant:"`` with nothing after.
    The space after ``"Assistant:"`` belongs to the answer segment: byte-level BPE glues a space to
    the word after it ("Ġhello"), so " hello" is how the joint string tokenises, and cutting after
    the space would change the tokens.
    """
    if messages[0].role == SYSTEM:
        system_prompt, messages = messages[0].content, messages[1:]
    segments = [Segment(system_prompt + TURN_SEPARATOR, False)] if system_prompt else []
    for m in messages:
        if m.role == USER:
            segments.append(Segment(f"{USER}: {m.content}{TURN_SEPARATOR}", False))
        else:
            segments.append(Segment(f"{ASSISTANT}:", False))
            if m.content:
                segments.append(Segment(f" {m.content}{eos_token}", True))
    ends_open = messages[-1].role == ASSISTANT and not messages[-1].content
    if add_generation_prompt and not ends_open:
        segments.append(Segment(f"{ASSISTANT}:", False))
    return merge_segments(strip_ends(segments))


def strip_ends(segments: list[Segment]) -> list[Segment]:
    """The original strips the whole prompt (e.g. the "\\n\\n" after a final user turn)."""
    segments = list(segments)
    segments[0] = Segment(segments[0].text.lstrip(), segments[0].supervised)
    segments[-1] = Segment(segments[-1].text.rstrip(), segments[-1].supervised)
    return [s for s in segments if s.text]


def merge_segments(segments: list[Segment]) -> list[Segment]:
    """Join neighbours with the same label flag, so prompt text is tokenised as one string."""
    merged: list[Segment] = []
    for s in segments:
        if merged and merged[-1].supervised == s.supervised:
            merged[-1] = Segment(merged[-1].text + s.text, s.supervised)
        else:
            merged.append(s)
    return merged

