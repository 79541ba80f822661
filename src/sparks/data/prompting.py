"""One place that turns a problem into a model's input, and a worked answer into its target.

Plain text (the embedded character tokenizer, or ``prompt.chat_template: never``)::

    think on    prompt "question"                      completion "<think>trace</think>answer"
    think off   prompt "question<think></think>"       completion "answer"

Templated (a tokenizer with a chat template, i.e. every hub chat model): the config's system
prompt and the question as the user turn, rendered by the tokenizer's own template with the
generation prompt. Think off is a template choice, never text glued to the question: a template
that takes ``enable_thinking`` (Qwen3) gets ``enable_thinking=False``; any other gets its
assistant turn pre-filled with an empty trace, after the generation prompt. A template that
already opens the trace (R1-Distill's ends with ``<think>\\n``) is not given a second one, and
the completion then starts inside the trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparks.config import Section
from sparks.data.formats import format_completion, format_prompt
from sparks.model.tokenizer import THINK_CLOSE, THINK_OPEN

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

EMPTY_TRACE = f"{THINK_OPEN}\n\n{THINK_CLOSE}\n\n"  # a pre-filled empty trace, as Qwen3's template writes it


@dataclass(frozen=True)
class PromptSettings(Section):
    """The ``prompt`` section of the config (defaults in the schema)."""

    SCHEMA_PATH = ("properties", "prompt")

    chat_template: str
    system: str | None


class Prompter:
    """Prompts and training targets for one tokenizer under the config's prompt settings."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, settings: PromptSettings):
        template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
        if settings.chat_template == "always" and template is None:
            raise ValueError(
                f"prompt.chat_template is 'always' but the tokenizer {tokenizer.name_or_path!r} has no chat template; "
                "use a chat model, add a template to its tokenizer_config.json, or set prompt.chat_template: auto"
            )
        self.tokenizer = tokenizer
        self.settings = settings
        self.templated = template is not None and settings.chat_template != "never"
        self.switch = self.templated and "enable_thinking" in template  # Qwen3-style think switch

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerBase, config: dict[str, Any]) -> Prompter:
        return cls(tokenizer, PromptSettings.from_config(config))

    def prompt(self, question: str, think: bool) -> str:
        """The text a model continues for ``question`` in the given think mode."""
        if not self.templated:
            return format_prompt(question, think)
        messages = [{"role": "user", "content": question}]
        if self.settings.system is not None:
            messages.insert(0, {"role": "system", "content": self.settings.system})
        extra = {"enable_thinking": think} if self.switch else {}
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)
        if not think and not self.switch:  # pre-fill the assistant turn with an empty trace
            text += f"\n{THINK_CLOSE}\n\n" if self.opens_trace(text) else EMPTY_TRACE
        return text

    @staticmethod
    def opens_trace(prompt: str) -> bool:
        """True when the prompt ends inside an opened trace (the template pre-fills ``<think>``)."""
        return prompt.rstrip().endswith(THINK_OPEN)

    def completion(self, prompt: str, trace: str, answer: str, reply: str | None, think: bool) -> str:
        """The target a model is trained to write after ``prompt``: the trace (when thinking) and
        then the reply, or the bare answer when the problem has no worked reply."""
        final = reply if reply else answer
        if not self.templated:
            return format_completion(trace, final, think)
        if not think:
            return final
        opened = "" if self.opens_trace(prompt) else f"{THINK_OPEN}\n"
        return f"{opened}{trace}\n{THINK_CLOSE}\n\n{final}"

    @staticmethod
    def reply_text(prompt: str, completion: str) -> str:
        """The model's whole reply: the completion, after the ``<think>`` the prompt opened (if
        any), so that checkers see an unclosed trace as unclosed."""
        return THINK_OPEN + completion if Prompter.opens_trace(prompt) and isinstance(completion, str) else completion

    def split_sample(self, prompt: str, sample: str) -> tuple[str, str] | None:
        """(trace, reply) of a sampled completion of ``prompt``; None unless it has exactly one
        trace, closed."""
        text = self.reply_text(prompt, sample)
        if text.count(THINK_CLOSE) != 1 or text.count(THINK_OPEN) > 1:
            return None
        trace, reply = text.split(THINK_CLOSE)
        return trace.replace(THINK_OPEN, "", 1).strip(), reply.strip()
