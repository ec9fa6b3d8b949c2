"""Trains the policy on one maze with the reward from reward.py. This script is fixed: the grader
runs it as is.

    python3 train.py --maze 3 --out policy.pt                  # development maze 3 (env.make_maze)
    python3 train.py --maze-file a.npz --out a.pt --maze-file b.npz --out b.pt --seed 7

Run i (counting from 0) is seeded with --seed + i. Each run: UPDATES updates of REINFORCE with
a learned value baseline; each update plays EPISODES_PER_UPDATE episodes from random open start
cells, for up to env.HORIZON steps, with actions sampled from the policy, and takes one Adam step
on the discounted returns of the rewards that reward.py gives (the true reward is not added).
"""

from __future__ import annotations

import argparse
import importlib
import time
from dataclasses import dataclass
from pathlib import Path

import env
import numpy as np
import torch
from policy import NUM_STATES, Policy, state_index

UPDATES = 300
EPISODES_PER_UPDATE = 32
GAMMA = 0.99
LEARNING_RATE = 1e-2
ENTROPY_COEF = 0.01
VALUE_COEF = 0.5


class RewardError(RuntimeError):
    """The reward from reward.py returned something training cannot use."""


@dataclass(frozen=True)
class Transition:
    position: np.ndarray
    has_key: np.ndarray
    action: np.ndarray
    next_position: np.ndarray
    next_has_key: np.ndarray
    success: np.ndarray
    step: int


def shaped_rewards(reward_fn: object, transition: Transition) -> np.ndarray:
    count = len(transition.action)
    try:
        rewards = np.asarray(reward_fn(transition), dtype=np.float64)  # type: ignore[operator]
    except (TypeError, ValueError) as exc:
        raise RewardError(f"the reward is not an array of numbers: {exc}") from exc
    if rewards.shape != (count,):
        raise RewardError(f"the reward has shape {rewards.shape}, expected ({count},)")
    if not np.isfinite(rewards).all():
        raise RewardError("the reward is not finite (nan or inf)")
    return rewards


def train(maze: env.Maze, seed: int) -> Policy:
    reward_module = importlib.import_module("reward")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    policy = Policy()
    optimizer = torch.optim.Adam(policy.parameters(), lr=LEARNING_RATE)
    maze_copy = env.Maze(maze.walls.copy(), maze.key.copy(), maze.door.copy())  # the reward's own
    reward_fn = reward_module.make_reward(maze_copy, GAMMA)
    all_states = torch.arange(NUM_STATES)
    for _ in range(UPDATES):
        with torch.no_grad():  # the policy is fixed during an update's episodes: tabulate it
            logits, _ = policy(all_states)
            cumulative = torch.softmax(logits.double(), dim=1).cumsum(dim=1).numpy()
        position, has_key = env.start_states(maze, EPISODES_PER_UPDATE, rng)
        running = np.ones(EPISODES_PER_UPDATE, dtype=bool)
        states, actions, rewards, masks = [], [], [], []
        for t in range(env.HORIZON):
            state = state_index(position, has_key)
            draw = rng.random((EPISODES_PER_UPDATE, 1))
            action = np.minimum((cumulative[state] < draw).sum(axis=1), env.NUM_ACTIONS - 1)
            moved = env.step(maze, position, has_key, action)
            reward = np.zeros(EPISODES_PER_UPDATE)
            reward[running] = shaped_rewards(
                reward_fn,
                Transition(
                    position[running],
                    has_key[running],
                    action[running],
                    moved.position[running],
                    moved.has_key[running],
                    moved.success[running],
                    t,
                ),
            )
            states.append(state)
            actions.append(action)
            rewards.append(reward)
            masks.append(running.copy())
            position, has_key = moved.position, moved.has_key
            running &= ~moved.success
            if not running.any():
                break
        optimizer.zero_grad()
        reinforce_loss(policy, states, actions, rewards, masks).backward()
        optimizer.step()
    return policy


def reinforce_loss(
    policy: Policy,
    states: list[np.ndarray],
    actions: list[np.ndarray],
    rewards: list[np.ndarray],
    masks: list[np.ndarray],
) -> torch.Tensor:
    steps = len(rewards)
    returns = np.zeros((steps, len(rewards[0])))
    future = np.zeros(len(rewards[0]))
    for t in range(steps - 1, -1, -1):
        still_running = masks[t + 1] if t + 1 < steps else np.zeros_like(masks[t])
        future = rewards[t] + GAMMA * future * still_running
        returns[t] = future
    target = torch.tensor(returns, dtype=torch.float32)
    mask = torch.tensor(np.array(masks), dtype=torch.float32)
    logits, value = policy(torch.from_numpy(np.concatenate(states)))
    log_probs = torch.log_softmax(logits, dim=1)
    taken = log_probs.gather(1, torch.from_numpy(np.concatenate(actions))[:, None]).reshape(steps, -1)
    entropy = -(log_probs.exp() * log_probs).sum(dim=1).reshape(steps, -1)
    value = value.reshape(steps, -1)
    advantage = (target - value).detach()
    per_step = -taken * advantage + VALUE_COEF * (target - value) ** 2 - ENTROPY_COEF * entropy
    return (per_step * mask).sum() / mask.sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--maze", type=int, action="append", default=[], help="a development maze's seed")
    parser.add_argument("--maze-file", type=Path, action="append", default=[], help="a maze saved by env.save_maze")
    parser.add_argument(
        "--out",
        type=Path,
        action="append",
        required=True,
        help="where to save the weights (one per maze)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    mazes = [(f"maze {seed}", env.make_maze(seed)) for seed in args.maze]
    mazes += [(str(path), env.load_maze(path)) for path in args.maze_file]
    if len(args.out) != len(mazes):
        parser.error("give one --out per --maze or --maze-file")
    torch.set_num_threads(1)
    for index, ((name, maze), out_path) in enumerate(zip(mazes, args.out)):
        started = time.monotonic()
        policy = train(maze, seed=args.seed + index)
        torch.save(policy.state_dict(), out_path)
        print(
            f"{name}: trained in {time.monotonic() - started:.1f}s, weights in {out_path}",
            flush=True,
        )


if __name__ == "__main__":
    main()
