"""The policy: a small network over the state (cell, key held), with a value head for training.

The grader builds the same network to run trained weights, and uses `success` below as the
evaluation: greedy actions (the most probable one) from given start states, for HORIZON steps.
"""

from __future__ import annotations

import numpy as np
import torch
from env import HORIZON, NUM_ACTIONS, SIZE, Maze, step
from torch import nn

HIDDEN = 64
NUM_STATES = 2 * SIZE * SIZE


def state_index(position: np.ndarray, has_key: np.ndarray) -> np.ndarray:
    """One integer per (cell, key held) state."""
    return position[:, 0] * SIZE + position[:, 1] + has_key.astype(np.int64) * SIZE * SIZE


class Policy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(NUM_STATES, HIDDEN)
        self.heads = nn.Linear(HIDDEN, NUM_ACTIONS + 1)  # action logits and the state's value

    def forward(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.heads(torch.tanh(self.embedding(states)))
        return out[:, :NUM_ACTIONS], out[:, NUM_ACTIONS]


def success(policy: Policy, maze: Maze, position: np.ndarray, has_key: np.ndarray) -> np.ndarray:
    """Whether the greedy policy succeeds from each start state within HORIZON steps."""
    done = np.zeros(len(position), dtype=bool)
    for _ in range(HORIZON):
        with torch.no_grad():
            logits, _ = policy(torch.from_numpy(state_index(position, has_key)))
        moved = step(maze, position, has_key, logits.argmax(dim=1).numpy())
        position = np.where(done[:, None], position, moved.position)
        has_key = np.where(done, has_key, moved.has_key)
        done |= moved.success
    return done
