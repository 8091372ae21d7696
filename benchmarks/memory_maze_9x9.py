"""Memory Maze 9x9 from pixels: RATE, DT, RMT and TrXL on the same planner data and budget, trained through the zoo.

    python benchmarks/memory_maze_9x9.py            # 12 zoo runs (4 models x 3 seeds), many hours on 2 cores
    python benchmarks/memory_maze_9x9.py --quick    # smoke runs: 50-step episodes, a few steps, one seed (minutes)
    python benchmarks/memory_maze_9x9.py --expert 0.75 --episodes 10   # the planner's mean return alone

Each run is ``benchmarks/zoo_result.py --conf-file hyperparams/rate_memory_maze.yml --env MemoryMaze-9x9-v0 --algo
rate [--mode dt|rmt|trxl] --seed S``: ``zoo/train.py`` trains the entry (offline on the privileged planner's
episodes, recorded once into ``demos/`` by the first run) and ``python -m rate_sb3.evaluate`` scores it over 100
seeded 1,000-step episodes. A run whose JSON exists is not run again, so a cut benchmark resumes where it stopped.
(Not named memory_maze.py: run from benchmarks/, that name would hide the memory_maze package.)
First it times the env alone (random actions, one process). Writes ``benchmarks/results/memory_maze.json`` as
``{"rate": mean return, "dt": ..., "rmt": ..., "trxl": ..., "n_seeds": 3}`` (means over seeds of the 100-episode
mean return; with ``"per_seed"``, ``"sem"`` (over seeds), ``"paper"``, ``"dataset"`` (the recorded demonstrations),
``"env_steps_per_second"`` and ``"runs"``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import RESULTS, sem, write_result
from zoo_result import rate_run_file, run_rate_once

BENCHMARKS = Path(__file__).resolve().parent
CONFIG = BENCHMARKS.parent / "hyperparams" / "rate_memory_maze.yml"
ENV = "MemoryMaze-9x9-v0"
MODES = ("rate", "dt", "rmt", "trxl")
SEEDS = (0, 1, 2)
QUICK_EPISODE_STEPS = 50
# Table 1 of the paper (mean return +- sem over 3 seeds), trained on 5,000 Dreamer episodes averaging 4.69
PAPER = {"rate": (7.64, 0.41), "dt": (6.83, 0.51), "rmt": (7.27, 0.21), "trxl": (7.12, 0.24), "bc_lstm": (4.75, 0.15)}


def run(mode: str, seed: int, quick: bool) -> dict:
    extra = ["--max-minutes", "720"] + (["--max-episode-steps", str(QUICK_EPISODE_STEPS)] if quick else [])
    return run_rate_once(ENV, CONFIG, mode, seed, quick, extra)


def env_steps_per_second(n_steps: int) -> dict:
    """Steps per second of the env alone (uniformly random actions, seeded resets), in this process."""
    from rate_sb3.envs import make_env

    env, rng = make_env(ENV), np.random.default_rng(0)
    started = time.perf_counter()
    env.reset(seed=0)
    reset_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(n_steps):
        env.step(int(rng.integers(6)))
    seconds = time.perf_counter() - started
    env.close()
    return {"steps": n_steps, "steps_per_second": round(n_steps / seconds, 1), "seeded_reset_seconds": reset_seconds}


def expert_returns(error_rate: float, n_episodes: int) -> dict:
    """Returns of the privileged planner with ``error_rate`` random actions on whole episodes (env and expert seeds
    100, 101, ...: not the seeds the dataset is recorded with)."""
    from rate_sb3.envs import make_env, make_expert

    env, returns = make_env(ENV), []
    for seed in range(100, 100 + n_episodes):
        expert = make_expert(ENV, error_rate=error_rate, seed=seed)
        env.reset(seed=seed)
        expert.reset(env)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(expert.act(env))
            total, done = total + reward, terminated or truncated
        returns.append(total)
    return {"error_rate": error_rate, "returns": returns, "mean_return": float(np.mean(returns)), "sem": sem(returns)}


def dataset_summary(quick: bool) -> dict | None:
    """Size and mean return of the recorded demonstrations (the entry's cache; smoke runs cache none)."""
    from rate_sb3.data import load_demonstrations
    from rate_sb3.zoo_checks import load_config

    cache = BENCHMARKS.parent / load_config(str(CONFIG))[ENV]["demonstrations"]["cache"]  # zoo runs start at the root
    if quick or not cache.is_file():
        return None
    returns = [float(np.sum(episode.rewards)) for episode in load_demonstrations(cache)]
    return {"file": str(cache), "episodes": len(returns), "mean_return": float(np.mean(returns))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--quick", action="store_true", help="smoke runs: 50-step episodes, a few steps, one seed")
    parser.add_argument("--expert", type=float, default=None, help="only measure the planner at this error rate")
    parser.add_argument("--episodes", type=int, default=10, help="episodes of --expert")
    args = parser.parse_args()
    if args.expert is not None:
        write_result(expert_returns(args.expert, args.episodes), RESULTS / f"memory_maze_expert_{args.expert}.json")
        return
    seeds = SEEDS[:1] if args.quick else SEEDS
    result: dict = {"env_steps_per_second": env_steps_per_second(200 if args.quick else 1000)}
    per_seed, runs = {}, {}
    for mode in args.modes:
        per_seed[mode] = [run(mode, seed, args.quick)["evaluations"][0]["result"]["mean_return"] for seed in seeds]
        runs[mode] = [rate_run_file(ENV, CONFIG, mode, seed, args.quick).name for seed in seeds]
        result[mode] = float(np.mean(per_seed[mode]))
    result["n_seeds"] = len(seeds)
    if len(seeds) > 1:
        result["sem"] = {mode: sem(seen) for mode, seen in per_seed.items()}
    result.update(per_seed=per_seed, paper=PAPER, dataset=dataset_summary(args.quick), runs=runs)
    write_result(result, RESULTS / f"memory_maze{'_quick' if args.quick else ''}.json")


if __name__ == "__main__":
    main()
