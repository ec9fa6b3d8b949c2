"""The reward the policy is trained on. This is the file to change.

train.py calls make_reward once per training run (one maze), then calls the function it returns
after every step of the batch of episodes still running:

    make_reward(maze, gamma) -> reward_fn
        maze    env.Maze: walls (bool array, SIZE x SIZE), key and door (row, column) positions
        gamma   the discount factor train.py uses

    reward_fn(transition) -> float array of shape (n,): the reward of each of the n transitions
        transition.position       int (n, 2)  where each episode was
        transition.has_key        bool (n,)   whether it held the key
        transition.action         int (n,)    the action taken (env.MOVES)
        transition.next_position  int (n, 2)  where it is now
        transition.next_has_key   bool (n,)
        transition.success        bool (n,)   it reached the door with the key: the episode ends
        transition.step           int         the step's index in the episodes (0 .. HORIZON - 1)

The version given returns the task's true reward: 1 on success, 0 otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

RewardFn = Callable[[Any], np.ndarray]


def make_reward(maze: Any, gamma: float) -> RewardFn:
    def reward_fn(transition: Any) -> np.ndarray:
        return transition.success.astype(np.float64)

    return reward_fn
