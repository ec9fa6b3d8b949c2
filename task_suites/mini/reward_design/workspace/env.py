"""The key-and-door gridworld: maze generation, dynamics, and the true success check.

A maze is a SIZE x SIZE grid of cells, walled around the border, with random wall segments
inside (every open cell reachable from every other), a key and a door. An episode starts on an
open cell; each step moves the agent one cell up, down, left or right (into a wall: it stays).
Stepping on the key's cell picks the key up. The episode succeeds, and ends, when the agent
steps on the door's cell holding the key; it fails after HORIZON steps. The true reward is
sparse: 1 on the successful step, 0 on every other.

Episodes are simulated in batches: positions are integer arrays of shape (n, 2) holding
(row, column), key flags boolean arrays of shape (n,).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIZE = 16
HORIZON = 80
WALL_SEGMENTS = 18
LONGEST_SEGMENT = 5
MIN_KEY_TO_DOOR = 16  # steps between the key and the door, at least
# Action i moves by MOVES[i]: up, down, left, right.
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])
NUM_ACTIONS = len(MOVES)


@dataclass(frozen=True)
class Maze:
    walls: np.ndarray  # bool (SIZE, SIZE), True where there is a wall
    key: np.ndarray  # int (2,): the key's (row, column)
    door: np.ndarray  # int (2,): the door's (row, column)

    def open_cells(self) -> np.ndarray:
        """(row, column) of every open cell, shape (m, 2)."""
        return np.argwhere(~self.walls)


@dataclass(frozen=True)
class Step:
    """Where a batch of moves led."""

    position: np.ndarray  # int (n, 2)
    has_key: np.ndarray  # bool (n,)
    success: np.ndarray  # bool (n,): stepped on the door holding the key (the episode ends)


def step(maze: Maze, position: np.ndarray, has_key: np.ndarray, action: np.ndarray) -> Step:
    """Apply one action to each of n episodes."""
    target = position + MOVES[action]
    blocked = maze.walls[target[:, 0], target[:, 1]]
    moved = np.where(blocked[:, None], position, target)
    holds_key = has_key | (moved == maze.key).all(axis=1)
    success = holds_key & (moved == maze.door).all(axis=1)
    return Step(moved, holds_key, success)


def start_states(maze: Maze, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` random start positions on open cells, and their key flags (True on the key)."""
    cells = maze.open_cells()
    position = cells[rng.integers(0, len(cells), size=count)]
    return position, (position == maze.key).all(axis=1)


def _reachable(walls: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """Steps from `start` to every cell (-1 where unreachable), by breadth-first search."""
    steps = np.full(walls.shape, -1)
    steps[start] = 0
    frontier = [start]
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


def make_maze(seed: int) -> Maze:
    """The maze of a seed (a pure function of it)."""
    rng = np.random.default_rng([seed, 0])
    while True:
        walls = np.zeros((SIZE, SIZE), dtype=bool)
        walls[0, :] = walls[-1, :] = walls[:, 0] = walls[:, -1] = True
        for _ in range(WALL_SEGMENTS):
            row, col = rng.integers(1, SIZE - 1, size=2)
            length = rng.integers(2, LONGEST_SEGMENT + 1)
            if rng.random() < 0.5:
                walls[row, col : col + length] = True
            else:
                walls[row : row + length, col] = True
        cells = np.argwhere(~walls)
        steps = _reachable(walls, tuple(cells[rng.integers(len(cells))]))
        if (steps[~walls] >= 0).mean() < 0.8:
            continue  # the walls cut off too much: draw again
        walls |= steps < 0  # fill the pockets that cannot be reached
        cells = np.argwhere(~walls)
        key, door = cells[rng.choice(len(cells), size=2, replace=False)]
        if _reachable(walls, tuple(key))[tuple(door)] >= MIN_KEY_TO_DOOR:
            return Maze(walls, key, door)


def save_maze(maze: Maze, path: Path) -> None:
    np.savez(path, walls=maze.walls, key=maze.key, door=maze.door)


def load_maze(path: Path) -> Maze:
    with np.load(path) as saved:
        return Maze(
            saved["walls"].astype(bool),
            saved["key"].astype(np.int64),
            saved["door"].astype(np.int64),
        )


def render(maze: Maze, position: np.ndarray | None = None) -> str:
    """The maze as text: # wall, K key, D door, A the agent (if a position is given)."""
    rows = [["#" if wall else "." for wall in row] for row in maze.walls]
    rows[maze.key[0]][maze.key[1]] = "K"
    rows[maze.door[0]][maze.door[1]] = "D"
    if position is not None:
        rows[position[0]][position[1]] = "A"
    return "\n".join("".join(row) for row in rows)


if __name__ == "__main__":
    for seed in range(3):
        print(f"maze {seed}:\n{render(make_maze(seed))}\n")
