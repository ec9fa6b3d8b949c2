"""The fixed language model and training recipe: a tiny byte-level transformer.

The selected documents are joined (in the order given, each followed by a blank line) into one
byte string of at most BUDGET_BYTES. Training draws TRAIN_STEPS batches of BATCH_SIZE windows of
CONTEXT + 1 bytes at uniformly random offsets of that string and minimises next-byte cross
entropy. Evaluation is bits per byte on a text, cut into windows of CONTEXT bytes, every byte
predicted from the bytes before it in its window.

This file is the same in the workspace and in the grader: only the selection changes.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

BUDGET_BYTES = 300_000
TRAIN_STEPS = 600
BATCH_SIZE = 32
CONTEXT = 64
LEARNING_RATE = 1e-2
WARMUP_STEPS = 60
SEPARATOR = b"\n\n"


class SelectionError(ValueError):
    """The selection breaks a rule; the message says what to change."""


def load_corpus(path: Path) -> dict[str, str]:
    documents: dict[str, str] = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            documents[row["id"]] = row["text"]
    return documents


def read_selection(path: Path, corpus: dict[str, str]) -> list[str]:
    """Document ids, one a line (blank lines and surrounding spaces ignored), checked against the rules."""
    ids: list[str] = []
    seen: set[str] = set()
    total = 0
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        doc_id = line.strip()
        if not doc_id:
            continue
        if doc_id not in corpus:
            raise SelectionError(f"line {line_number}: {doc_id[:40]!r} is not a document id of corpus.jsonl")
        if doc_id in seen:
            raise SelectionError(f"line {line_number}: {doc_id} is selected twice; list each document once")
        seen.add(doc_id)
        ids.append(doc_id)
        total += len(corpus[doc_id].encode("utf-8")) + len(SEPARATOR)
        if total > BUDGET_BYTES:
            raise SelectionError(
                f"line {line_number}: the selection passes the budget of {BUDGET_BYTES} bytes here "
                "(each document counts its UTF-8 bytes plus 2 for the separator); select less"
            )
    if not ids:
        raise SelectionError("the selection is empty")
    return ids


def training_bytes(ids: list[str], corpus: dict[str, str]) -> bytes:
    return b"".join(corpus[doc_id].encode("utf-8") + SEPARATOR for doc_id in ids)


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
        qkv = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class ByteTransformer(nn.Module):
    def __init__(self, width: int = 64, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(256, width)
        self.position_embedding = nn.Embedding(CONTEXT, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 256)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(ids) + self.position_embedding(torch.arange(ids.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def train(data: bytes, seed: int = 0, log_every: int = 0) -> ByteTransformer:
    if len(data) < CONTEXT + 2:
        raise SelectionError(f"the selection holds {len(data)} bytes; at least {CONTEXT + 2} are needed")
    torch.manual_seed(seed)
    draw = random.Random(seed)
    stream = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()
    model = ByteTransformer()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(1.0, (step + 1) / WARMUP_STEPS) * 0.5 * (1 + math.cos(math.pi * step / TRAIN_STEPS)),
    )
    model.train()
    for step in range(TRAIN_STEPS):
        starts = [draw.randrange(len(data) - CONTEXT) for _ in range(BATCH_SIZE)]
        windows = torch.stack([stream[start : start + CONTEXT + 1] for start in starts])
        logits = model(windows[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 256), windows[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        schedule.step()
        if log_every and (step % log_every == 0 or step == TRAIN_STEPS - 1):
            print(f"step {step:4d}  loss {loss.item() / math.log(2):.3f} bits/byte", flush=True)
    return model


@torch.no_grad()
def bits_per_byte(model: ByteTransformer, text: bytes) -> float:
    model.eval()
    stream = torch.frombuffer(bytearray(text), dtype=torch.uint8).long()
    usable = (len(stream) - 1) // CONTEXT * CONTEXT
    inputs = stream[:usable].view(-1, CONTEXT)
    targets = stream[1 : usable + 1].view(-1, CONTEXT)
    total = 0.0
    for first in range(0, len(inputs), 64):
        logits = model(inputs[first : first + 64])
        total += F.cross_entropy(
            logits.reshape(-1, 256), targets[first : first + 64].reshape(-1), reduction="sum"
        ).item()
    return total / (targets.numel() * math.log(2))
