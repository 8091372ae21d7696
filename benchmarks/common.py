"""Helpers shared by the benchmark scripts: where results go, what machine measured them, atomic JSON writes."""

from __future__ import annotations

import argparse
import json
import os
import platform
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
