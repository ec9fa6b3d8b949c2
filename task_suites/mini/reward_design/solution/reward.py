"""Reference reward: potential-based shaping with the shortest-path distance through the key.

Shaping F(s, s') = gamma * phi(s') - phi(s), added to the true reward, leaves the optimal policy
unchanged (Ng, Harada & Russell, 1999) when phi is 0 on terminal states. Here phi(s) is minus
the number of steps still needed from s, counted through the key while it is not held (the
maze's walls taken into account by breadth-first search), divided by the largest such number
in the maze so that phi lies in [-1, 0]. Every step towards the key, then the door, now earns
reward, instead of only the last one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

RewardFn = Callable[[Any], np.ndarray]
MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))


def steps_from(walls: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Shortest number of steps from `source` to every open cell (breadth-first search)."""
    steps = np.full(walls.shape, -1)
    steps[tuple(source)] = 0
    frontier = [tuple(source)]
    while frontier:
        next_frontier = []
        for row, col in frontier:
            for d_row, d_col in MOVES:
                cell = (row + d_row, col + d_col)
                if not walls[cell] and steps[cell] < 0:
                    steps[cell] = steps[row, col] + 1
                    next_frontier.append(cell)
        frontier = next_frontier
    return steps


def make_reward(maze: Any, gamma: float) -> RewardFn:
    to_key = steps_from(maze.walls, maze.key)
    to_door = steps_from(maze.walls, maze.door)
    key_to_door = to_door[tuple(maze.key)]
    # Steps still needed from each cell, without the key (index 0) and with it (index 1).
    remaining = np.stack([to_key + key_to_door, to_door]).astype(np.float64)
    longest = remaining[:, ~maze.walls].max()

    def potential(position: np.ndarray, has_key: np.ndarray) -> np.ndarray:
        return -remaining[has_key.astype(int), position[:, 0], position[:, 1]] / longest

    def reward_fn(transition: Any) -> np.ndarray:
        after = potential(transition.next_position, transition.next_has_key)
        after = np.where(transition.success, 0.0, after)  # terminal states have potential 0
        shaping = gamma * after - potential(transition.position, transition.has_key)
        return transition.success.astype(np.float64) + shaping

    return reward_fn
