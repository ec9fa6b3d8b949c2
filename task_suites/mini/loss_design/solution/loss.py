"""Reference loss: logit-adjusted generalised cross-entropy.

Logit adjustment (Menon et al., 2021) trains on logits + log(class prior), so that the raw logits
the classifier predicts with are calibrated for a balanced test distribution instead of the
long-tailed training one. Generalised cross-entropy (Zhang & Sabuncu, 2018), (1 - p_y^q) / q,
bounds the loss of an example the network disagrees with, so wrongly labelled examples pull
much less than under cross-entropy (q -> 0 gives cross-entropy, q = 1 the mean absolute error).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
Q = 0.5


def make_loss(class_counts: torch.Tensor, num_steps: int) -> LossFn:
    prior = class_counts.float().clamp_min(1.0) / class_counts.sum()
    log_prior = prior.log()

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor, sample_ids: torch.Tensor, step: int) -> torch.Tensor:
        probs = F.softmax(logits + log_prior, dim=1)
        label_prob = probs.gather(1, labels[:, None]).squeeze(1).clamp_min(1e-7)
        return ((1.0 - label_prob**Q) / Q).mean()

    return loss_fn
