"""Training throughput of RATE against window length, and rollout throughput against RecurrentPPO.

    python benchmarks/training_speed.py            # full run (about 1 min on 2 busy cores)
    python benchmarks/training_speed.py --quick    # smoke run (about 20 s)

* Training: ``model.pretrain`` on T-Maze oracle demonstrations, batch 32, the T-Maze architecture of
  ``tmaze_memory.py`` with K in {10, 25, 50} and 3 segments; throughput in env steps of trajectory per second
  (batch_size * window_len / seconds per gradient step).
* Rollout: ``predict`` plus env stepping on CartPoleNoVel-v1 with 8 envs (and 1 and 16: ``--rollout-envs``),
  RATE (the architecture of ``hyperparams/rate.yml``) against sb3-contrib RecurrentPPO (the RL Zoo's
  policy_kwargs); untrained models, actions sampled as in online collection. ``rollout`` holds the 8-env
  comparison (``rate_over_recurrent_ppo``), ``rollout_by_n_envs`` every count.

The machine may be shared, so the variants are timed side by side (taking turns, repeated, medians) and
compared as ratios. Writes ``benchmarks/results/training_speed[_quick].json`` and ``.png``, and prints the
JSON object as the last stdout line.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import matplotlib
import numpy as np
import rl_zoo3.import_envs  # noqa: F401  (registers CartPoleNoVel-v1)
import torch as th
from common import RESULTS, ZOO_LSTM_POLICY_KWARGS, add_timing_arguments, machine_info, write_result
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv
from tmaze_memory import ARCHITECTURE

from rate_sb3 import RATE, PrevRewardWrapper
from rate_sb3.collect import collect_episodes
from rate_sb3.envs import make_expert

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CONTEXT_LENGTHS = (10, 25, 50)
ROLLOUT_ENV, ROLLOUT_ENVS = "CartPoleNoVel-v1", 8  # the headline comparison
# hyperparams/rate.yml (CartPoleNoVel-v1) and hyperparams/ppo_lstm.yml (the RL Zoo's tuned entry)
RATE_CARTPOLE = dict(context_len=20, n_segments=3, d_model=64, n_layers=2, n_heads=4, n_mem_tokens=4, dropout=0.1)


# ---------------------------------------------------------------------------------------------- training
def training_model(architecture: dict, n_demos: int, batch_size: int, seed: int) -> RATE:
    """RATE on oracle demonstrations that fill its window exactly (T = n_segments * K)."""
    window = architecture["n_segments"] * architecture["context_len"]
    demos = collect_episodes(
        make_expert("TMaze-v0"),
        lambda: gym.make("TMaze-v0", corridor_length=window - 1),
        n_demos,
        n_envs=4,
        seed=seed,
    )
    model = RATE("RATEPolicy", "TMaze-v0", demonstrations=demos, batch_size=batch_size, seed=seed, **architecture)
    model.pretrain(2, log_interval=2)  # builds the trajectory buffer and warms up
    # Windows start at the episode start: no burn-in segments, so a step trains on batch x window env steps.
    model.replay_buffer.start_at_zero = 1.0
    return model


def time_training(models: dict[int, RATE], rounds: int, steps: int) -> dict[int, list[float]]:
    """Seconds per gradient step, the models taking turns ``steps`` gradient steps at a time."""
    seconds: dict[int, list[float]] = {k: [] for k in models}
    keys = list(models)
    for r in range(rounds):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            started = time.perf_counter()
            models[k].pretrain(steps, log_interval=steps)
            seconds[k].append((time.perf_counter() - started) / steps)
    return seconds


def training_throughput(args: argparse.Namespace) -> dict:
    models = {
        k: training_model(dict(ARCHITECTURE, context_len=k), args.demos, args.batch_size, args.seed)
        for k in CONTEXT_LENGTHS
    }
    seconds = time_training(models, args.rounds, args.steps)
    result = {}
    for k, values in seconds.items():
        window = ARCHITECTURE["n_segments"] * k
        median = float(np.median(values))
        result[str(k)] = {
            "window_len": window,
            "seconds_per_gradient_step": round(median, 4),
            "env_steps_per_second": round(args.batch_size * window / median, 1),
            "per_round_seconds": [round(v, 4) for v in values],
        }
    base = result[str(CONTEXT_LENGTHS[0])]["env_steps_per_second"]
    for entry in result.values():
        entry["throughput_relative_to_K10"] = round(entry["env_steps_per_second"] / base, 3)
    return result


# ----------------------------------------------------------------------------------------------- rollout
class Rollout:
    """``predict`` and ``step`` of a recurrent model on its VecEnv, continuing across calls to :meth:`run`."""

    def __init__(self, model: BaseAlgorithm, env: VecEnv) -> None:
        self.model, self.env = model, env
        self.observations = env.reset()
        self.state, self.starts = None, np.ones(env.num_envs, dtype=bool)

    def run(self, n_steps: int) -> float:
        """Seconds for ``n_steps`` steps of every env."""
        started = time.perf_counter()
        for _ in range(n_steps):
            actions, self.state = self.model.predict(self.observations, self.state, self.starts, deterministic=False)
            self.observations, _, self.starts, _ = self.env.step(actions)
        return time.perf_counter() - started


def rollouts(seed: int, n_envs: int) -> dict[str, Rollout]:
    rate_env = make_vec_env(ROLLOUT_ENV, n_envs=n_envs, seed=seed, wrapper_class=PrevRewardWrapper)
    rate = RATE("RATEPolicy", rate_env, target_return=500, seed=seed, **RATE_CARTPOLE)
    lstm_env = make_vec_env(ROLLOUT_ENV, n_envs=n_envs, seed=seed)
    lstm = RecurrentPPO("MlpLstmPolicy", lstm_env, seed=seed, policy_kwargs=ZOO_LSTM_POLICY_KWARGS)
    return {"rate": Rollout(rate, rate_env), "recurrent_ppo": Rollout(lstm, lstm_env)}


def median_env_steps_per_second(
    runners: dict[str, Rollout], n_envs: int, block: int, rounds: int, warm_up: int
) -> dict[str, float]:
    """Each runner's median env steps per second over ``rounds`` blocks of ``block`` steps, the runners taking turns
    in an order that alternates from round to round, after ``warm_up`` steps each."""
    for runner in runners.values():
        runner.run(warm_up)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(rounds):
        for name in list(runners)[:: 1 if r % 2 else -1]:
            rates[name].append(n_envs * block / runners[name].run(block))
    return {name: round(float(np.median(values)), 1) for name, values in rates.items()}


def rollout_throughput(args: argparse.Namespace, n_envs: int) -> dict:
    runners = rollouts(args.seed, n_envs)
    medians = median_env_steps_per_second(runners, n_envs, args.block, args.rollout_rounds, warm_up=20)
    result = {name: {"env_steps_per_second": rate} for name, rate in medians.items()}
    result["rate_over_recurrent_ppo"] = round(
        result["rate"]["env_steps_per_second"] / result["recurrent_ppo"]["env_steps_per_second"], 3
    )
    result.update(env=ROLLOUT_ENV, n_envs=n_envs, steps_per_block=args.block, blocks=args.rollout_rounds)
    result["rate_architecture"], result["recurrent_ppo_policy"] = RATE_CARTPOLE, "MlpLstmPolicy (lstm 64, critic lstm)"
    return result


# ------------------------------------------------------------------------------------------------- plot
def plot(result: dict, path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    training = result["training"]
    windows = [entry["window_len"] for entry in training.values()]
    left.plot(windows, [entry["env_steps_per_second"] for entry in training.values()], "o-")
    for k, entry in training.items():
        point = (entry["window_len"], entry["env_steps_per_second"])
        left.annotate(f"K = {k}", point, textcoords="offset points", xytext=(0, -15), ha="center")
    left.set(xlabel="window length (env steps, 3 segments)", ylabel="env steps of trajectory / s")
    left.set_title(f"RATE pretraining throughput (batch {result['settings']['batch_size']})")
    left.set_ylim(0, 1.15 * max(entry["env_steps_per_second"] for entry in training.values()))
    rollout = result["rollout"]
    names = ["rate", "recurrent_ppo"]
    right.bar(["RATE", "RecurrentPPO"], [rollout[name]["env_steps_per_second"] for name in names], color=["C0", "C1"])
    right.set(ylabel="env steps / s")
    right.set_title(f"Rollout on {rollout['env']}, {rollout['n_envs']} envs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--rounds", type=int, default=None, help="training turns per window length")
    parser.add_argument("--steps", type=int, default=None, help="gradient steps per training turn")
    parser.add_argument("--rollout-rounds", type=int, default=None, help="rollout turns per model")
    parser.add_argument("--block", type=int, default=200, help="env steps per rollout turn")
    parser.add_argument("--rollout-envs", type=int, nargs="+", default=[1, ROLLOUT_ENVS, 16], help="env counts")
    parser.add_argument("--rollout-only", action="store_true", help="skip the training measurement")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--demos", type=int, default=64, help="oracle demonstrations per window length")
    add_timing_arguments(parser)
    args = parser.parse_args()
    args.rounds = args.rounds or (3 if args.quick else 10)
    args.steps = args.steps or (3 if args.quick else 5)
    args.rollout_rounds = args.rollout_rounds or (10 if args.quick else 20)
    th.set_num_threads(args.threads)
    th.manual_seed(args.seed)
    started = time.perf_counter()
    result = {"benchmark": "training_speed", "quick": args.quick, "machine": machine_info()}
    result["settings"] = dict(
        batch_size=args.batch_size,
        context_lengths=CONTEXT_LENGTHS,
        architecture=ARCHITECTURE,
        rounds=args.rounds,
        gradient_steps_per_round=args.steps,
        rollout_rounds=args.rollout_rounds,
        rollout_block=args.block,
        rollout_envs=args.rollout_envs,
        demonstrations=args.demos,
        threads=args.threads,
    )
    if not args.rollout_only:
        result["training"] = training_throughput(args)
        print(f"training: { {k: v['env_steps_per_second'] for k, v in result['training'].items()} }", flush=True)
    by_n_envs = {n: rollout_throughput(args, n) for n in sorted(set(args.rollout_envs) | {ROLLOUT_ENVS})}
    result["rollout"], result["rollout_by_n_envs"] = by_n_envs[ROLLOUT_ENVS], by_n_envs
    print(f"rollout: { {n: r['rate_over_recurrent_ppo'] for n, r in by_n_envs.items()} }", flush=True)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    name = "training_speed" + ("_rollout" if args.rollout_only else "") + ("_quick" if args.quick else "")
    out = args.out or RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.rollout_only:
        plot(result, out.with_suffix(".png"))
    write_result(result, out)


if __name__ == "__main__":
    main()
