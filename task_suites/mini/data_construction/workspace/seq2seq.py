"""The fixed model and training recipe: a tiny character-level transformer that maps a string to a string.

Each pair is one sequence, BOS + input + SEP + output + EOS, and the model (a decoder-only
transformer: 3 layers, width 64, about 167k parameters) learns to continue the input with the output; the loss is
taken on the output and EOS only. Training draws TRAIN_STEPS batches of BATCH_SIZE pairs,
uniformly with replacement from the training file, so a pair written twice is drawn twice as
often. Prediction is greedy, up to MAX_OUTPUT_CHARS characters.

This file is the same in the workspace and in the grader: only the training data changes.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

TRAIN_STEPS = 1000
BATCH_SIZE = 32
LEARNING_RATE = 5e-3
WARMUP_STEPS = 100
MAX_INPUT_CHARS = 48
MAX_OUTPUT_CHARS = 12
MAX_PAIRS = 3000
MAX_FILE_BYTES = 1_000_000

PAD, BOS, SEP, EOS = 0, 1, 2, 3
FIRST_CHAR = 4  # printable ASCII ' '..'~' take ids 4..98
VOCAB_SIZE = FIRST_CHAR + 95
CONTEXT = 1 + MAX_INPUT_CHARS + 1 + MAX_OUTPUT_CHARS + 1


class TrainingDataError(ValueError):
    """The training file breaks a rule; the message says which line and what to change."""


def encode(text: str) -> list[int]:
    return [ord(char) - 32 + FIRST_CHAR for char in text]


def decode(ids: list[int]) -> str:
    return "".join(chr(i - FIRST_CHAR + 32) for i in ids if i >= FIRST_CHAR)


def _check_text(text: object, field: str, limit: int, line_number: int) -> str:
    if not isinstance(text, str) or not text:
        raise TrainingDataError(f"line {line_number}: {field!r} must be a non-empty string")
    if len(text) > limit:
        raise TrainingDataError(f"line {line_number}: {field!r} has {len(text)} characters, at most {limit} allowed")
    if any(not " " <= char <= "~" for char in text):
        raise TrainingDataError(f"line {line_number}: {field!r} may hold printable ASCII characters only: {text!r}")
    return text


def load_pairs(path: Path) -> list[tuple[str, str]]:
    """Read a JSON-lines file of {"input": ..., "output": ...} objects (blank lines are skipped)."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise TrainingDataError(f"{path.name} has {size} bytes, at most {MAX_FILE_BYTES} allowed")
    pairs: list[tuple[str, str]] = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8", errors="strict").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrainingDataError(f"line {line_number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise TrainingDataError(f'line {line_number}: expected an object {{"input": ..., "output": ...}}')
        pairs.append(
            (
                _check_text(row.get("input"), "input", MAX_INPUT_CHARS, line_number),
                _check_text(row.get("output"), "output", MAX_OUTPUT_CHARS, line_number),
            )
        )
        if len(pairs) > MAX_PAIRS:
            raise TrainingDataError(f"more than {MAX_PAIRS} pairs; keep at most {MAX_PAIRS}")
    if not pairs:
        raise TrainingDataError(f"{path.name} holds no pairs")
    return pairs


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class CharTransformer(nn.Module):
    def __init__(self, width: int = 64, layers: int = 3, heads: int = 4) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(VOCAB_SIZE, width)
        self.position_embedding = nn.Embedding(CONTEXT, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, VOCAB_SIZE)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(ids) + self.position_embedding(torch.arange(ids.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def _batch(pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and next-token targets (-100 where no loss is taken)."""
    sequences = [[BOS, *encode(source), SEP, *encode(target), EOS] for source, target in pairs]
    length = max(map(len, sequences))
    ids = torch.full((len(pairs), length), PAD)
    targets = torch.full((len(pairs), length), -100)
    for row, (sequence, (source, _)) in enumerate(zip(sequences, pairs)):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        first_output = len(source) + 2  # position of the first output character
        targets[row, first_output - 1 : len(sequence) - 1] = torch.tensor(sequence[first_output:])
    return ids, targets


def train(pairs: list[tuple[str, str]], seed: int = 0, log_every: int = 0) -> CharTransformer:
    torch.manual_seed(seed)
    draw = random.Random(seed)
    model = CharTransformer()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(1.0, (step + 1) / WARMUP_STEPS) * 0.5 * (1 + math.cos(math.pi * step / TRAIN_STEPS)),
    )
    model.train()
    for step in range(TRAIN_STEPS):
        ids, targets = _batch([draw.choice(pairs) for _ in range(BATCH_SIZE)])
        loss = F.cross_entropy(model(ids).reshape(-1, VOCAB_SIZE), targets.reshape(-1), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        schedule.step()
        if log_every and (step % log_every == 0 or step == TRAIN_STEPS - 1):
            print(f"step {step:5d}  loss {loss.item():.4f}", flush=True)
    return model


@torch.no_grad()
def predict(model: CharTransformer, inputs: list[str]) -> list[str]:
    """Greedy outputs; an input that is too long or not printable ASCII gets ""."""
    model.eval()
    outputs = [""] * len(inputs)
    by_length: dict[int, list[int]] = {}
    for index, text in enumerate(inputs):
        if 0 < len(text) <= MAX_INPUT_CHARS and all(" " <= char <= "~" for char in text):
            by_length.setdefault(len(text), []).append(index)
    for indices in by_length.values():  # same length: no padding needed
        ids = torch.tensor([[BOS, *encode(inputs[i]), SEP] for i in indices])
        for _ in range(MAX_OUTPUT_CHARS + 1):
            next_ids = model(ids)[:, -1].argmax(-1)
            ids = torch.cat([ids, next_ids[:, None]], dim=1)
        first_output = len(inputs[indices[0]]) + 2
        for row, index in enumerate(indices):
            generated = ids[row, first_output:].tolist()
            outputs[index] = decode(generated[: generated.index(EOS)] if EOS in generated else generated)
    return outputs
