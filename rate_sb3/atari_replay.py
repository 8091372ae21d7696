"""DQN-replay's recipe for Atari datasets made here: the episodes of an SB3 learner recorded while it learns, then an
equal slice of episodes from every stage of its learning.

DQN-replay (Agarwal et al., 2020), the data of DT and of RATE on Atari, is the replay of a DQN agent over the 50
stages of its learning; DT took 500k of its transitions, a few episodes at a time from buffers of all stages.
Here an SB3 learner plays several copies of the game (``benchmarks/atari_datasets.py``), :class:`EpisodeRecorder`
writes every episode its envs finish to the shard of the current stage, and :func:`write_stage_slices` writes the
dataset: the last k episodes of every stage, k as large as the transition budget allows (:func:`stage_slices`).

What the episodes hold, and why:

- Whole games. DQN-replay's episodes are games (Dopamine's Atari env does not end an episode when a life is lost),
  so the learner plays ``AtariWrapper(terminal_on_life_loss=False)`` and RATE's entries evaluate on the same env.
  SB3's default (episodic life) would cut a game into lives, each starting a new zero-padded frame stack, and the
  steps of each life's reset (a no-op, FIRE) would be missing from the recorded game.
- Raw game scores per step (a Pong point is 1, a Q*bert cube 25). DQN-replay stores rewards clipped to [-1, 1];
  DT computed its returns-to-go from those but conditioned its evaluation on game scores (its targets, such as
  Q*bert 14,000, are scores), so its training and evaluation disagree. Here returns-to-go and targets are both game
  scores; DQN-replay's clipped rewards are ``np.sign(rewards)`` (Atari scores are integers). The learner itself
  learns from clipped rewards, as the RL Zoo's does (:class:`ClipRewardKeepRaw`).
- Observations as the learner saw them: 84x84 grayscale, 4 stacked frames, channel first (``(4, 84, 84)`` uint8),
  zeros in the stack before a game's first frame (``VecFrameStack``). Actions are the learner's sampled actions.
- Games longer than 27,000 steps (108,000 frames: DQN-replay's and DT's limit) are truncated.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.atari_wrappers import AtariWrapper
from stable_baselines3.common.callbacks import BaseCallback

from rate_sb3.episode import Episode
from rate_sb3.image_datasets import ImageDatasetWriter, load_image_dataset

ATARI_GAMES = {
    "pong": "PongNoFrameskip-v4",
    "breakout": "BreakoutNoFrameskip-v4",
    "qbert": "QbertNoFrameskip-v4",
    "seaquest": "SeaquestNoFrameskip-v4",
}
FRAME_STACK = 4
DEFAULT_TRANSITIONS = 200_000  # benchmarks/atari_datasets.py's budget (its docstring says why)
MAX_EPISODE_FRAMES = 108_000  # 27,000 steps of 4 frames
ATARI_WRAPPER_KWARGS = dict(terminal_on_life_loss=False, clip_reward=False)
"""``AtariWrapper``'s arguments for the datasets' games: whole games, raw scores (the same in RATE's zoo entries)."""


class ClipRewardKeepRaw(gym.Wrapper):
    """Rewards clipped to their sign, as by ``AtariWrapper``; the raw score kept in ``info["raw_reward"]``."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        info["raw_reward"] = float(reward)
        return observation, float(np.sign(reward)), terminated, truncated, info


def learner_env_wrapper(env: gym.Env) -> gym.Env:
    """The learner's wrappers: ``AtariWrapper`` playing whole games with raw scores, then clipped rewards.

    :param env: An Atari ``*NoFrameskip-v4`` env (in SB3's ``Monitor``, as ``make_vec_env`` builds it).
    """
    return ClipRewardKeepRaw(AtariWrapper(env, **ATARI_WRAPPER_KWARGS))


def build_command(path: str | os.PathLike) -> str | None:
    """
    The command that builds the dataset at ``path`` (``.../atari/<game>/replay_<transitions>.h5``), or None when
    ``path`` is not one of ``benchmarks/atari_datasets.py``'s datasets.

    :param path: A demonstrations path, e.g. of a zoo entry.
    """
    parts = Path(path).parts
    match = re.fullmatch(r"replay_(\d+)\.h5", parts[-1]) if parts else None
    if match is None or len(parts) < 3 or parts[-3] != "atari" or parts[-2] not in ATARI_GAMES:
        return None
    budget = "" if int(match[1]) == DEFAULT_TRANSITIONS else f" --transitions {int(match[1])}"
    return f"python benchmarks/atari_datasets.py --game {parts[-2]}{budget}"


def stack_frames(frames: np.ndarray, n_stack: int) -> np.ndarray:
    """
    The channel-first frame stacks ``VecFrameStack`` gives after a reset: newest frame last, zeros before the first.

    :param frames: The frames of one episode, shape ``(T, H, W)``.
    :param n_stack: Frames per stack.
    :return: Shape ``(T, n_stack, H, W)``.
    """
    padded = np.concatenate([np.zeros((n_stack - 1, *frames.shape[1:]), frames.dtype), frames])
    return np.stack([padded[first : first + len(frames)] for first in range(n_stack)], axis=1)


class _Game:
    """One sub-env's game in progress: only the newest frame of each stack is kept (a quarter of the memory)."""

    def __init__(self, first_frame: np.ndarray) -> None:
        self.frames, self.actions, self.rewards = [first_frame], [], []

    def add(self, action: Any, raw_reward: float, frame: np.ndarray) -> None:
        self.actions.append(action)
        self.rewards.append(raw_reward)
        self.frames.append(frame)

    def episode(self, n_stack: int, truncated: bool) -> Episode:
        return Episode(
            observations=stack_frames(np.stack(self.frames), n_stack),
            actions=np.asarray(self.actions, dtype=np.int64),
            rewards=np.asarray(self.rewards, dtype=np.float32),
            terminated=not truncated,
            truncated=truncated,
        )


class EpisodeRecorder(BaseCallback):
    """
    Writes every episode the learner's own envs finish to :attr:`writer` (the current stage's shard; set it before
    each ``learn`` call): frames as the learner saw them, its actions, the raw scores of :class:`ClipRewardKeepRaw`.

    Keep one recorder for every ``learn(..., reset_num_timesteps=False)`` of a process: games in progress carry over
    from one call to the next. The learner's observations must be channel-first stacks of ``n_stack`` frames (SB3
    transposes image observations itself).

    :param n_stack: The learner's ``VecFrameStack`` size.
    """

    def __init__(self, n_stack: int = FRAME_STACK) -> None:
        super().__init__()
        self.n_stack = n_stack
        self.writer: ImageDatasetWriter | None = None
        self._games: list[_Game] | None = None

    def _on_training_start(self) -> None:
        shape = self.model.observation_space.shape
        if len(shape) != 3 or shape[0] != self.n_stack:
            raise ValueError(
                f"EpisodeRecorder records channel-first stacks of {self.n_stack} frames, but the learner observes "
                f"{shape}: wrap its env in VecFrameStack(env, {self.n_stack}) and let SB3 transpose the images"
            )
        if self._games is None:  # the first learn() of this process: its envs were just reset
            self._games = [_Game(stack[-1]) for stack in self.model._last_obs]

    def _on_step(self) -> bool:
        new_obs, actions, dones, infos = (self.locals[key] for key in ("new_obs", "actions", "dones", "infos"))
        for index, info in enumerate(infos):
            if "raw_reward" not in info:
                raise KeyError("EpisodeRecorder needs info['raw_reward']: wrap the env with learner_env_wrapper")
            game = self._games[index]
            if not dones[index]:
                game.add(actions[index], info["raw_reward"], new_obs[index][-1])
                continue
            game.add(actions[index], info["raw_reward"], info["terminal_observation"][-1])
            self.writer.add(game.episode(self.n_stack, bool(info.get("TimeLimit.truncated", False))))
            self._games[index] = _Game(new_obs[index][-1])
        return True


def stage_slices(stage_lengths: Sequence[Sequence[int]], budget: int) -> list[range]:
    """
    An equal slice of every stage: its last k episodes, k the largest number every stage has whose transitions,
    summed over the stages, fit the budget.

    :param stage_lengths: The episode lengths of each stage, in the order the episodes finished.
    :param budget: The most transitions the slices may hold together.
    :return: The episode indices taken from each stage.
    :raises ValueError: When the budget cannot hold one episode of every stage.
    """
    empty = [index for index, lengths in enumerate(stage_lengths) if len(lengths) == 0]
    if empty:
        raise ValueError(f"stages {empty} recorded no finished episode: learn in fewer, longer stages")
    k, total = 0, 0
    while k < min(len(lengths) for lengths in stage_lengths):
        more = sum(int(lengths[len(lengths) - k - 1]) for lengths in stage_lengths)
        if total + more > budget:
            break
        k, total = k + 1, total + more
    if k == 0:
        raise ValueError(
            f"a budget of {budget} transitions cannot take one episode from each of the {len(stage_lengths)} stages "
            f"(their last episodes hold {sum(int(lengths[-1]) for lengths in stage_lengths)}): raise the budget"
        )
    return [range(len(lengths) - k, len(lengths)) for lengths in stage_lengths]


def write_stage_slices(shards: Sequence[Path], budget: int, path: str | os.PathLike, metadata: dict) -> dict:
    """
    Write the dataset: :func:`stage_slices` of the stages' shards, stage after stage, with ``metadata`` and a summary.

    :param shards: One episode file per stage, in the order of learning (written by :class:`EpisodeRecorder`).
    :param budget: The most transitions of the dataset.
    :param path: The dataset file (written to ``<path>.partial`` first, then renamed).
    :param metadata: How the data was made (stored with the summary in the file's ``metadata``).
    :return: The summary: episodes per stage, transitions, and each stage's episodes, transitions and mean return.
    """
    stages = [load_image_dataset(shard) for shard in shards]
    slices = stage_slices([[episode.length for episode in episodes] for episodes in stages], budget)
    taken = [[episodes[index] for index in indices] for episodes, indices in zip(stages, slices)]
    summary = {
        "episodes_per_stage": len(slices[0]),
        "transitions": sum(episode.length for episodes in taken for episode in episodes),
        "stage_slices": [_stage_summary(episodes, len(recorded)) for episodes, recorded in zip(taken, stages)],
    }
    with ImageDatasetWriter(path) as writer:
        for episodes in taken:
            writer.add_all(episodes)
        writer.set_metadata({**metadata, **summary})
    return summary


def _stage_summary(episodes: Sequence[Episode], recorded: int) -> dict:
    returns = [episode.episode_return for episode in episodes]
    return {
        "episodes_recorded": recorded,
        "transitions": sum(episode.length for episode in episodes),
        "mean_return": float(np.mean(returns)),
        "max_return": float(np.max(returns)),
    }
