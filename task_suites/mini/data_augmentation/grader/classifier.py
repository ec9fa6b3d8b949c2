"""The fixed text classifier and training recipe: a tiny BERT built from a config, on word tokens.

Text is lowercased and split into words (`tokenize`); the vocabulary is every word of the
training file (so a word the training file never shows is [UNK] to the model). The model is a
transformers BertForSequenceClassification of 2 layers, width 64, trained for TRAIN_STEPS
batches of BATCH_SIZE examples drawn uniformly with replacement from the training file (an
example written twice is drawn twice as often). Prediction is the arg-max label.

This file is the same in the workspace and in the grader: only the training data changes.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification
from transformers.utils import logging

LABELS = [
    "check_balance",
    "transfer_money",
    "lost_card",
    "open_account",
    "loan_request",
    "exchange_rate",
    "change_pin",
    "dispute_charge",
]
TRAIN_STEPS = 500
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
WARMUP_STEPS = 50
DROPOUT = 0.0
MAX_TOKENS = 32
MAX_EXAMPLES = 20_000
MAX_TEXT_CHARS = 200
MAX_FILE_BYTES = 4_000_000
PAD, UNK, CLS = 0, 1, 2
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[$€£?!]")

logging.set_verbosity_error()


class TrainingDataError(ValueError):
    """The training file breaks a rule; the message says which line and what to change."""


def tokenize(text: str) -> list[str]:
    return WORD.findall(text.lower())


def load_examples(path: Path) -> list[tuple[str, str]]:
    """Read a JSON-lines file of {"text": ..., "label": ...} objects (blank lines are skipped)."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise TrainingDataError(f"{path.name} has {size} bytes, at most {MAX_FILE_BYTES} allowed")
    examples: list[tuple[str, str]] = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrainingDataError(f"line {line_number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise TrainingDataError(f'line {line_number}: expected an object {{"text": ..., "label": ...}}')
        text, label = row.get("text"), row.get("label")
        if not isinstance(text, str) or not text.strip():
            raise TrainingDataError(f"line {line_number}: 'text' must be a non-empty string")
        if len(text) > MAX_TEXT_CHARS:
            raise TrainingDataError(
                f"line {line_number}: 'text' has {len(text)} characters, at most {MAX_TEXT_CHARS} allowed"
            )
        if label not in LABELS:
            raise TrainingDataError(f"line {line_number}: 'label' must be one of {', '.join(LABELS)}; got {label!r}")
        examples.append((text, label))
        if len(examples) > MAX_EXAMPLES:
            raise TrainingDataError(f"more than {MAX_EXAMPLES} examples; keep at most {MAX_EXAMPLES}")
    if not examples:
        raise TrainingDataError(f"{path.name} holds no examples")
    return examples


@dataclass
class Classifier:
    vocabulary: dict[str, int]
    model: BertForSequenceClassification

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [[CLS, *(self.vocabulary.get(w, UNK) for w in tokenize(t))][:MAX_TOKENS] for t in texts]
        length = max(map(len, rows))
        ids = torch.full((len(rows), length), PAD)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return ids, mask

    @torch.no_grad()
    def predict(self, texts: list[str]) -> list[str]:
        self.model.eval()
        labels: list[str] = []
        for first in range(0, len(texts), 256):
            ids, mask = self.encode(texts[first : first + 256])
            logits = self.model(input_ids=ids, attention_mask=mask).logits
            labels += [LABELS[i] for i in logits.argmax(-1).tolist()]
        return labels


def train(examples: list[tuple[str, str]], seed: int = 0, log_every: int = 0) -> Classifier:
    torch.manual_seed(seed)
    draw = random.Random(seed)
    words = sorted({w for text, _ in examples for w in tokenize(text)})
    vocabulary = {w: i + 3 for i, w in enumerate(words)}
    config = BertConfig(
        vocab_size=len(vocabulary) + 3,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=MAX_TOKENS,
        type_vocab_size=1,
        pad_token_id=PAD,
        hidden_dropout_prob=DROPOUT,
        attention_probs_dropout_prob=DROPOUT,
    )
    config.num_labels = len(LABELS)
    classifier = Classifier(vocabulary, BertForSequenceClassification(config))
    model = classifier.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(1.0, (step + 1) / WARMUP_STEPS) * 0.5 * (1 + math.cos(math.pi * step / TRAIN_STEPS)),
    )
    label_ids = {label: i for i, label in enumerate(LABELS)}
    model.train()
    for step in range(TRAIN_STEPS):
        batch = [draw.choice(examples) for _ in range(BATCH_SIZE)]
        ids, mask = classifier.encode([text for text, _ in batch])
        targets = torch.tensor([label_ids[label] for _, label in batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=targets).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        schedule.step()
        if log_every and (step % log_every == 0 or step == TRAIN_STEPS - 1):
            print(f"step {step:4d}  loss {loss.item():.4f}", flush=True)
    return classifier


def accuracy(classifier: Classifier, examples: list[tuple[str, str]]) -> float:
    predictions = classifier.predict([text for text, _ in examples])
    return sum(p == label for p, (_, label) in zip(predictions, examples)) / len(examples)
