"""The one rule for what counts as an instruction, shared by the grounding and policy nodes.

An instruction becomes model input (tokens, prompt text, log lines), so its size bounds the work
one message can cause: a 100 kB text kept the policy's inference busy for minutes. Control
characters have no place in a task description and can forge log lines or terminal output.
Both nodes refuse the same texts with the same message, and a refused instruction stops the task
(the robot holds until a valid one arrives) rather than leaving the previous one running.
"""

from __future__ import annotations

import unicodedata

MAX_INSTRUCTION_LENGTH = 1000
"""Characters. Real task descriptions are a sentence or two; the default of both nodes."""

_ALLOWED_WHITESPACE = frozenset("\t\n\r")
_REFUSED_CATEGORIES = {"Cc": "control", "Cs": "surrogate", "Co": "private-use"}


def instruction_problem(text: str, max_length: int = MAX_INSTRUCTION_LENGTH) -> str | None:
    """Why `text` cannot be an instruction (None when it can). An empty text is valid: it means stop."""
    if len(text) > max_length:
        return f"instruction of {len(text)} characters, more than max_instruction_length={max_length}"
    for position, char in enumerate(text):
        if char in _ALLOWED_WHITESPACE:
            continue
        kind = _REFUSED_CATEGORIES.get(unicodedata.category(char))
        if kind is not None:
            return f"instruction contains a {kind} character U+{ord(char):04X} at position {position}"
    return None
