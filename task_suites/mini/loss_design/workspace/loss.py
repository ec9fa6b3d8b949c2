"""The training loss. This is the file to change.

train.py calls make_loss once per training run, then calls the function it returns at every step:

    make_loss(class_counts, num_steps) -> loss_fn
        class_counts  LongTensor [num_classes]: examples per (noisy) label in the training set
        num_steps     the number of optimisation steps of the run

    loss_fn(logits, labels, sample_ids, step) -> scalar tensor
        logits      [batch, num_classes], the classifier's outputs (with gradient)
        labels      LongTensor [batch], the (noisy) training labels of the batch
        sample_ids  LongTensor [batch], each example's index in the training set (fixed for a run)
        step        int, 0 .. num_steps - 1
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


def make_loss(class_counts: torch.Tensor, num_steps: int) -> LossFn:
    def loss_fn(logits: torch.Tensor, labels: torch.Tensor, sample_ids: torch.Tensor, step: int) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    return loss_fn
