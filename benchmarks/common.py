"""Helpers shared by the benchmark scripts: where results go, what machine measured them, atomic JSON writes, and
what the dataset builders record (progress files, the code's commit, checkpoints' SHA-256), and d3rlpy's baselines
on this project's episodes."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

RESULTS = Path(__file__).resolve().parent / "results"

# The RL Zoo's tuned RecurrentPPO policy for CartPoleNoVel-v1 (hyperparams/ppo_lstm.yml)
ZOO_LSTM_POLICY_KWARGS = dict(
    ortho_init=False,
    activation_fn=th.nn.ReLU,
    lstm_hidden_size=64,
    enable_critic_lstm=True,
    net_arch=dict(pi=[64], vf=[64]),
)


# The model of the inference benchmarks: the paper's T-Maze segment length with a mid-size model (speed depends
# on the shapes, not on the weights).
INFERENCE_ARCHITECTURE = dict(
    context_len=50, n_segments=3, d_model=64, n_layers=2, n_heads=4, n_mem_tokens=8, n_heads_mrv=2, dropout=0.1
)


def observation_batch(rng: np.random.Generator, n_envs: int) -> dict[str, np.ndarray]:
    """A T-Maze-like observation batch with the previous reward (values do not change the cost)."""
    observation = rng.integers(-1, 2, size=(n_envs, 4)).astype(np.float32)
    return {"observation": observation, "prev_reward": np.zeros((n_envs, 1), np.float32)}


def add_timing_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every speed benchmark takes: ``--threads``, ``--seed`` and ``--out``."""
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared machine)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)


def machine_info() -> dict:
    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": th.__version__,
        "torch_threads": th.get_num_threads(),
    }


class NormalizedObservations:
    """A model trained in a VecNormalize, acting on raw observations with the current (frozen) statistics."""

    def __init__(self, model: BaseAlgorithm, normalizer: VecNormalize) -> None:
        self.model, self.normalizer, self.observation_space = model, normalizer, model.observation_space

    def predict(self, observation, state=None, episode_start=None, deterministic=False):
        return self.model.predict(self.normalizer.normalize_obs(observation), state, episode_start, deterministic)


def write_result(result: dict, out: Path) -> None:
    """Write ``result`` to ``out`` through a temporary file (no half-written JSON), then print it as one line."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    print(json.dumps(result))


def read_json(path: Path, default: dict) -> dict:
    """
    The JSON object in ``path``, or ``default`` when there is no such file (a builder's first run).

    :param path: A JSON file written by :func:`write_json`.
    :param default: What a missing file stands for.
    """
    return json.loads(path.read_text()) if path.is_file() else default


def write_json(path: Path, data: dict) -> None:
    """
    Write ``data`` to ``path`` through a temporary file, so that a cut run never leaves it half-written.

    :param path: The JSON file.
    :param data: A JSON-serialisable object.
    """
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(path)


def git_commit() -> str:
    """The commit of the benchmark code (``unknown`` outside a git checkout)."""
    command = ["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"]
    return subprocess.run(command, capture_output=True, text=True).stdout.strip() or "unknown"


def sha256(path: Path) -> str:
    """
    The SHA-256 of a file, read a megabyte at a time.

    :param path: The file, e.g. a checkpoint that generated a dataset.
    """
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sem(values: list[float]) -> float | None:
    """The standard error of the mean over seeds (None for a single one)."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None


def format_score(mean: float | None, error: float | None) -> str:
    """A mean for a results table, with its sem where there is one (``-`` where nothing ran)."""
    if mean is None:
        return "-"
    return f"{mean:.1f}" if error is None else f"{mean:.1f} +- {error:.1f}"


def d3rlpy_dataset(episodes: list, observations: np.ndarray | None = None, **options):
    """
    d3rlpy's ``MDPDataset`` of this project's episodes, every episode ended (a timeout where it was truncated).

    :param episodes: :class:`rate_sb3.Episode` objects.
    :param observations: One per step, in episode order, instead of the episodes' own (each but the last of an
        episode), e.g. single frames that ``options``' ``transition_picker`` stacks again.
    :param options: More arguments of ``MDPDataset``.
    """
    import d3rlpy

    ends = np.cumsum([episode.length for episode in episodes]) - 1
    terminals, timeouts = np.zeros(ends[-1] + 1, np.float32), np.zeros(ends[-1] + 1, np.float32)
    terminals[ends] = [episode.terminated for episode in episodes]
    timeouts[ends] = [not episode.terminated for episode in episodes]  # d3rlpy needs every episode to end
    if observations is None:
        observations = np.concatenate([episode.observations[:-1] for episode in episodes])
    return d3rlpy.dataset.MDPDataset(
        observations=observations,
        actions=np.concatenate([episode.actions for episode in episodes]),
        rewards=np.concatenate([episode.rewards for episode in episodes]),
        terminals=terminals,
        timeouts=timeouts,
        **options,
    )


class D3rlpyAgent:
    """A d3rlpy algorithm behind SB3's ``predict`` (the mean or argmax action), for ``rate_sb3.evaluate.evaluate``."""

    def __init__(self, algo, observation_space) -> None:
        self.algo, self.observation_space = algo, observation_space

    def predict(self, observations, state=None, episode_start=None, deterministic=True):
        return self.algo.predict(np.asarray(observations, dtype=np.float32)), state
