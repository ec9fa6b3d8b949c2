"""Grammar-constrained decoding for the embedded model: every reply is an instance of a JSON schema.

llguidance (the Rust engine behind guidance, also a structured-output backend of vLLM and SGLang)
compiles the schema against the tokenizer and, before each generated token, says which tokens may
come next; a transformers logits processor sets every other token's logit to minus infinity. Its
wheel has no dependencies, and computing a mask takes tens of microseconds on a CPU
(docs/llm-servers.md has the numbers and why this library).

A reply must also end within its token cap. Near the cap the processor raises the logits of the
tokens that close what is open (quotes, braces, brackets, the end of text), so the model finishes
the object it is writing instead of being cut off inside it; among the tokens the grammar allows,
the model still chooses.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch
from transformers import LogitsProcessor, PreTrainedTokenizerBase

from ..errors import InnovatorError

CLOSING_SHARE = 0.25  # of a reply's cap, kept for closing what is open ...
CLOSING_TOKENS_MAX = 48  # ... but no more than this many tokens
CLOSING_BONUS = 1000.0  # added to the logits of closing tokens: they win wherever the grammar allows them
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class SchemaError(InnovatorError, ValueError):
    """The schema cannot be compiled into a grammar (the message says why)."""


@cache
def _grammar_tokenizer(tokenizer: PreTrainedTokenizerBase) -> Any:
    import llguidance.hf

    return llguidance.hf.from_tokenizer(tokenizer)  # about half a second: once per tokenizer


@cache
def _closing_token_ids(tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    ids = [
        token_id
        for token_id in range(len(tokenizer))
        if (text := tokenizer.decode([token_id]).strip()) and set(text) <= set('"}]')
    ]
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    return torch.tensor(ids, dtype=torch.long)


def closing_starts_at(max_new_tokens: int) -> int:
    """How many tokens a reply may write freely before closing begins."""
    return max_new_tokens - min(CLOSING_TOKENS_MAX, int(max_new_tokens * CLOSING_SHARE))


class SchemaConstraint(LogitsProcessor):
    """Masks, before each new token, every token that cannot continue an instance of `schema`.

    One object per generation. `text_is_complete(generated)` says afterwards whether the reply is a
    whole instance of the schema.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, schema: dict[str, Any], max_new_tokens: int) -> None:
        import llguidance

        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)
        except ValueError as exc:
            raise SchemaError(str(exc)) from None
        self._matcher = llguidance.LLMatcher(_grammar_tokenizer(tokenizer), grammar, log_level=0)
        if self._matcher.is_error():
            raise SchemaError(self._matcher.get_error())
        self._closing_ids = _closing_token_ids(tokenizer)
        self._closing_from = closing_starts_at(max_new_tokens)
        self._prompt_length: int | None = None
        self._consumed = 0  # generated tokens the matcher has seen

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._prompt_length is None:
            self._prompt_length = input_ids.shape[1]
        generated = input_ids[0, self._prompt_length :].tolist()
        self._consume(generated)
        if len(generated) >= self._closing_from:
            scores[0, self._closing_ids] += CLOSING_BONUS
        return scores.masked_fill(~self._allowed(scores.shape[-1]), float("-inf"))

    def _consume(self, generated: list[int]) -> None:
        for token in generated[self._consumed :]:
            if not self._matcher.consume_token(token):
                raise RuntimeError(f"the grammar refused token {token}: {self._matcher.get_error()}")
        self._consumed = len(generated)

    def _allowed(self, vocab_size: int) -> torch.Tensor:
        # One byte per token of the tokenizer; the model may have more logits (padding): never allowed.
        by_token = torch.frombuffer(bytearray(self._matcher.compute_logit_bias()), dtype=torch.uint8) > 0
        allowed = torch.zeros(vocab_size, dtype=torch.bool)
        allowed[: min(vocab_size, by_token.numel())] = by_token[:vocab_size]
        return allowed.unsqueeze(0)

    def text_is_complete(self, generated: list[int]) -> bool:
        """Whether `generated` (the whole reply) is a complete instance of the schema."""
        self._consume(generated)
        return self._matcher.is_accepting()
