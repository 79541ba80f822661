"""The plain-text think-on / think-off formats (models without a chat template: the embedded
default). :class:`sparks.data.prompting.Prompter` uses them, and the chat template otherwise.

Think-off pre-fills an empty trace, as Qwen3's ``/no_think`` template does::

    think-on   prompt "question"                    completion "<think>trace</think>answer"
    think-off  prompt "question<think></think>"     completion "answer"
"""

from __future__ import annotations

from sparks.model.tokenizer import THINK_CLOSE, THINK_OPEN


def format_prompt(question: str, think: bool) -> str:
    """The prompt a model sees: think-off pre-fills an empty trace."""
    return question if think else question + THINK_OPEN + THINK_CLOSE


def format_completion(trace: str, answer: str, think: bool) -> str:
    """The reply a model is trained to write; an empty trace is a direct answer."""
    return f"{THINK_OPEN}{trace}{THINK_CLOSE}{answer}" if think else str(answer)
