"""ViZDoom-Two-Colors: RATE and DT on the same expert data and budget, scored separately on red and green pillars.

    python benchmarks/vizdoom_two_colors.py            # 3 seeds x (RATE, DT) zoo runs + 2,100-step evaluations
    python benchmarks/vizdoom_two_colors.py --quick    # smoke runs: a few steps, 4 short episodes per colour

First it measures the env itself on this CPU (steps per second under random actions, and under the privileged
expert) and the expert's mean return on the training episodes' length. Then each run is
``benchmarks/zoo_result.py --conf-file hyperparams/rate_pixels.yml --env ViZDoomTwoColors-v0 --algo rate
[--mode dt] --seed S``: the zoo trains the entry offline on the expert's cached episodes, and the saved model is then
scored with ``python -m rate_sb3.evaluate --stochastic`` (actions sampled, as the paper's ViZDoom evaluation) on
``--episodes / 2`` episodes with a red pillar and as many with a green one (env seeds 0, 1, ...: the same rooms for
both colours), each ``--eval-steps`` long (the paper's 2,100).
``all`` is the mean over both colours. A run or evaluation whose JSON exists is not run again, so a cut benchmark
resumes. Writes ``benchmarks/results/vizdoom_two_colors.json`` as ``{"rate": {"all", "red", "green"}, "dt": {...},
"n_seeds"}`` (means over seeds; ``per_seed``, ``env``, ``expert`` and ``runs`` alongside) and prints it last.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import RESULTS, machine_info, write_result
from minigrid_pixels import CONFIG, MODES
from zoo_result import REPO, evaluate_rate, load_entry, rate_run_file, run_rate_once

ENV_ID = "ViZDoomTwoColors-v0"
COLORS = ("red", "green")
QUICK_EVAL_STEPS, QUICK_EPISODES, QUICK_ENV_STEPS, QUICK_EXPERT_EPISODES = 200, 8, 500, 2


def measure_env(n_steps: int, n_expert_episodes: int, episode_steps: int, expert_kwargs: dict) -> dict:
    """Steps per second of the env under random actions and under the expert, and the expert's mean return over
    ``n_expert_episodes`` episodes of ``episode_steps`` steps (env seeds 0, 1, ...)."""
    from rate_sb3.envs import make_env, make_expert

    env = make_env(ENV_ID, max_steps=n_steps)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    started = time.perf_counter()
    for _ in range(n_steps):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(5)))
        if terminated or truncated:
            env.reset()
    random_rate = n_steps / (time.perf_counter() - started)
    env.close()
    env = make_env(ENV_ID, max_steps=episode_steps)
    expert, returns, steps = make_expert(ENV_ID, **expert_kwargs), [], 0
    started = time.perf_counter()
    for seed in range(n_expert_episodes):
        env.reset(seed=seed)
        expert.reset(env)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(expert.act(env))
            total, done, steps = total + reward, terminated or truncated, steps + 1
        returns.append(total)
    env.close()
    return {
        "random_steps_per_second": round(random_rate, 1),
        "expert_steps_per_second": round(steps / (time.perf_counter() - started), 1),
        "expert": {"kwargs": expert_kwargs, "episode_steps": episode_steps, "episodes": n_expert_episodes},
        "expert_mean_return": float(np.mean(returns)),
        "expert_std_return": float(np.std(returns)),
    }


def data_summary(entry: dict) -> dict | None:
    """Episodes, steps and mean return of the cached demonstrations the runs trained on (none before a full run)."""
    from rate_sb3 import load_demonstrations

    cache = REPO / entry["demonstrations"]["cache"]
    if not cache.is_file():
        return None
    episodes = load_demonstrations(cache)
    returns = [float(np.sum(episode.rewards)) for episode in episodes]
    lengths = [len(episode.actions) for episode in episodes]
    return {
        "file": str(cache.relative_to(REPO)),
        "episodes": len(episodes),
        "steps": int(np.sum(lengths)),
        "mean_return": float(np.mean(returns)),
        "mean_length": float(np.mean(lengths)),
    }


def color_score(run_json: Path, color: str, args: argparse.Namespace) -> dict:
    """The evaluation of a run's model on ``color`` pillars (cached next to the run's JSON)."""
    path = run_json.with_name(f"{run_json.stem}_{color}{args.eval_steps}_sampled.json")
    if not path.is_file():
        model = REPO / json.loads(run_json.read_text())["run_folder"] / f"{ENV_ID}.zip"
        kwargs = {"max_steps": args.eval_steps, "pillar_color": color}
        write_result(evaluate_rate(model, ENV_ID, kwargs, args.episodes // 2, stochastic=True), path)
    return json.loads(path.read_text())["result"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per run, half per colour")
    parser.add_argument("--eval-steps", type=int, default=2100, help="evaluation episode length")
    parser.add_argument("--quick", action="store_true", help="smoke runs: a few steps, short evaluations")
    args = parser.parse_args()
    if args.quick:
        args.eval_steps, args.episodes = QUICK_EVAL_STEPS, QUICK_EPISODES
    if args.episodes < 2 or args.episodes % 2:
        parser.error(f"--episodes must be an even number >= 2 (half per colour), got {args.episodes}")
    entry = load_entry(CONFIG, ENV_ID)
    demonstrations = entry["demonstrations"]
    env = measure_env(
        QUICK_ENV_STEPS if args.quick else 5000,
        QUICK_EXPERT_EPISODES if args.quick else 20,
        entry["env_kwargs"]["max_steps"],
        demonstrations["expert_kwargs"],
    )
    result: dict = {"n_seeds": len(args.seeds), "eval_steps": args.eval_steps, "episodes": args.episodes}
    result |= {"env": env | {"machine": machine_info()}, "runs": {}, "per_seed": {}}
    for seed in args.seeds:  # seed by seed: a cut benchmark has whole RATE-DT pairs
        for mode in MODES:
            run_rate_once(ENV_ID, CONFIG, mode, seed, args.quick)
            run_json = rate_run_file(ENV_ID, CONFIG, mode, seed, args.quick)
            score = {color: color_score(run_json, color, args)["mean_return"] for color in COLORS}
            score["all"] = float(np.mean([score[color] for color in COLORS]))
            result["runs"][f"{mode} seed{seed}"] = run_json.name
            result["per_seed"][f"{mode} seed{seed}"] = score
    for mode in MODES:
        scores = [result["per_seed"][f"{mode} seed{seed}"] for seed in args.seeds]
        result[mode] = {key: float(np.mean([s[key] for s in scores])) for key in ("all", *COLORS)}
        result[mode]["sem_all"] = float(np.std([s["all"] for s in scores]) / np.sqrt(len(scores)))
    result["data"] = None if args.quick else data_summary(entry)
    write_result(result, RESULTS / f"vizdoom_two_colors{'_quick' if args.quick else ''}.json")


if __name__ == "__main__":
    main()
