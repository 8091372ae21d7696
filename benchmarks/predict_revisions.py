"""``predict`` time of this checkout against another git revision, side by side in one run.

    python benchmarks/predict_revisions.py --base c320c08      # about 2 min on 2 cores

The base revision is checked out into a temporary git worktree. Each round runs one child process per
revision, in alternating order; a child imports ``rate_sb3`` from its revision and times ``predict`` over
150-step T-Maze-like episodes (the model of ``inference_speed.py``) for each batch size. Reports the
median over rounds of each revision's mean ms per call and the ratio base / this checkout. Writes
``benchmarks/results/predict_revisions.json`` (or ``--out``) and prints it as the last stdout line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import INFERENCE_ARCHITECTURE, RESULTS, machine_info, observation_batch, write_result

ROOT = Path(__file__).resolve().parent.parent
EPISODE_STEPS = 150


def time_predict(root: str, batches: list[int], episodes: int) -> dict[int, float]:
    """In a child process: mean ms per ``predict`` call of the ``rate_sb3`` found under ``root``."""
    sys.path.insert(0, root)
    import torch as th

    import rate_sb3

    if not rate_sb3.__file__.startswith(root):
        raise RuntimeError(f"imported rate_sb3 from {rate_sb3.__file__}, not from {root}")
    th.set_num_threads(1)
    policy = rate_sb3.RATE("RATEPolicy", "TMaze-v0", seed=0, **INFERENCE_ARCHITECTURE).policy
    result = {}
    for n_envs in batches:
        rng = np.random.default_rng(0)
        observations = [observation_batch(rng, n_envs) for _ in range(EPISODE_STEPS)]
        per_episode = []
        for _ in range(episodes + 1):  # the first episode warms up and is dropped
            state, started = None, time.perf_counter()
            for t, obs in enumerate(observations):
                _, state = policy.predict(obs, state, np.full(n_envs, t == 0), deterministic=True)
            per_episode.append((time.perf_counter() - started) / EPISODE_STEPS)
        result[n_envs] = float(np.median(per_episode[1:]) * 1e3)
    return result


def run_child(root: Path, args: argparse.Namespace) -> dict[int, float]:
    command = [sys.executable, __file__, "--child", str(root), "--episodes", str(args.episodes), "--batches"]
    output = subprocess.run(command + [str(b) for b in args.batches], capture_output=True, text=True, check=True)
    return {int(n): ms for n, ms in json.loads(output.stdout.strip().splitlines()[-1]).items()}


def compare(args: argparse.Namespace) -> dict:
    base_commit = subprocess.run(
        ["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    times: dict[str, list[dict[int, float]]] = {"base": [], "current": []}
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.base], cwd=ROOT, check=True)
        try:
            for round_id in range(args.rounds):
                order = [("base", worktree), ("current", ROOT)]
                for name, root in order[:: 1 if round_id % 2 else -1]:
                    times[name].append(run_child(root, args))
                print(f"round {round_id}: base {times['base'][-1]}, current {times['current'][-1]}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=True)
    result = {"benchmark": "predict_revisions", "machine": machine_info(), "base": base_commit}
    result["settings"] = dict(rounds=args.rounds, episodes=args.episodes, episode_steps=EPISODE_STEPS, threads=1)
    result["architecture"] = INFERENCE_ARCHITECTURE
    for n_envs in args.batches:
        base, current = (float(np.median([run[n_envs] for run in times[name]])) for name in ("base", "current"))
        result[f"{n_envs}_envs"] = {
            "base_ms_per_call": round(base, 4),
            "current_ms_per_call": round(current, 4),
            "base_over_current": round(base / current, 2),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD~1", help="git revision to compare this checkout with")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 100], help="n_envs per predict call")
    parser.add_argument("--rounds", type=int, default=4, help="child processes per revision, alternating")
    parser.add_argument("--episodes", type=int, default=5, help="timed episodes per batch size in each child")
    parser.add_argument("--out", type=Path, default=RESULTS / "predict_revisions.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(time_predict(args.child, args.batches, args.episodes)))
        return
    write_result(compare(args), args.out)


if __name__ == "__main__":
    main()
