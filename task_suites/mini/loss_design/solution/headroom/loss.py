"""Beyond the reference: logit-adjusted symmetric cross-entropy.

Logit adjustment as in the reference; symmetric cross-entropy (Wang et al., 2019) adds to a small
cross-entropy term the reverse cross-entropy -sum_k p_k log y_k (with log 0 clipped to log 1e-4),
which is bounded and noise-tolerant but, unlike GCE, keeps a gradient on confidently fitted
classes, so the rare classes are still learnt.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
ALPHA = 0.1  # weight of cross-entropy
BETA = 0.5  # weight of reverse cross-entropy
LOG_ZERO = -9.2103  # log(1e-4)


def make_loss(class_counts: torch.Tensor, num_steps: int) -> LossFn:
    log_prior = (class_counts.float().clamp_min(1.0) / class_counts.sum()).log()

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor, sample_ids: torch.Tensor, step: int) -> torch.Tensor:
        adjusted = logits + log_prior
        probs = F.softmax(adjusted, dim=1).clamp(1e-7, 1.0)
        log_one_hot = torch.full_like(probs, LOG_ZERO).scatter(1, labels[:, None], 0.0)
        reverse = -(probs * log_one_hot).sum(dim=1).mean()
        return ALPHA * F.cross_entropy(adjusted, labels) + BETA * reverse

    return loss_fn
