"""D4RL-style MuJoCo offline: RATE, DT, BC and IQL on the same datasets and gradient-step budget, normalised scores.

    python benchmarks/mujoco_offline.py                          # 9 pairs x 4 algorithms x 3 seeds: days on 2 cores
    python benchmarks/mujoco_offline.py --pairs hopper-medium --seeds 0   # one pair, one seed
    python benchmarks/mujoco_offline.py --quick                  # tiny datasets made on the fly, minutes
    python benchmarks/mujoco_offline.py --summary-only           # the summary of the runs done so far

The datasets are ``benchmarks/mujoco_datasets.py``'s (build them first). RATE and DT are the zoo entries
``rate_sb3/<pair>-v0`` of ``hyperparams/rate.yml``, trained and scored by ``benchmarks/zoo_result.py`` (DT:
``--mode dt``, the same entry as one long segment without memory) over 50 seeded episodes. BC and IQL are d3rlpy's
(``pip install "rate_sb3[mujoco]"``), with d3rlpy's defaults (IQL with its MuJoCo reward scaling), observations
standardised by the dataset's statistics as RATE's and DT's are, and the entry's
number of gradient steps, scored by ``rate_sb3.evaluate.evaluate`` over the same 50 seeded episodes with the mean
action. Every run keeps its own JSON in ``benchmarks/results/`` and is not run again, so a cut benchmark resumes.
Writes ``benchmarks/results/mujoco_offline.json``: per pair the mean normalised score of each algorithm over the
seeds that ran (with the sem and the number of seeds), and their average over the pairs where every algorithm ran;
``rate_segment_reset`` is RATE's model scored again with the return-to-go reset to the target at every segment, the
paper's MuJoCo evaluation (its appendix E.6).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from common import RESULTS, D3rlpyAgent, d3rlpy_dataset, format_score, sem, write_result
from mujoco_datasets import QUICK_MINARI_ROOT
from zoo_result import EVAL_ENVS, rate_run_file, run_rate_once

from rate_sb3.d4rl import MUJOCO_ENV_IDS, dataset_id
from rate_sb3.data import load_minari
from rate_sb3.envs.mujoco import pair_env_id
from rate_sb3.evaluate import evaluate

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
RATE_CONFIG = REPO / "hyperparams" / "rate.yml"
KINDS = ("medium", "medium-replay", "medium-expert")
PAIRS = tuple(f"{name}-{kind}" for name in MUJOCO_ENV_IDS for kind in KINDS)
ALGOS = ("rate", "dt", "bc", "iql")
SEGMENT_RESET = "rate_segment_reset"  # RATE's model scored with the return-to-go reset at every segment (the paper's)
EVAL_EPISODES = 50
# The paper's Table 3 (RATE, DT), on D4RL's datasets: the column beside ours in the markdown table
PAPER_SCORES = {
    "halfcheetah-medium": (43.5, 42.6),
    "halfcheetah-medium-replay": (39.0, 36.6),
    "halfcheetah-medium-expert": (87.4, 86.8),
    "hopper-medium": (77.4, 67.6),
    "hopper-medium-replay": (83.7, 82.7),
    "hopper-medium-expert": (112.5, 107.6),
    "walker2d-medium": (80.7, 74.0),
    "walker2d-medium-replay": (73.7, 66.6),
    "walker2d-medium-expert": (108.7, 108.1),
}
QUICK_STEPS = 64  # zoo_result.py's --quick budget, used by BC and IQL too


def split_pair(pair: str) -> tuple[str, str]:
    name, kind = pair.split("-", 1)
    return name, kind


def zoo_run(pair: str, algo: str, seed: int, quick: bool) -> dict:
    """RATE or DT through ``zoo_result.py``; returns its JSON."""
    env_id = pair_env_id(*split_pair(pair))
    return run_rate_once(env_id, RATE_CONFIG, algo, seed, quick, ["--eval-episodes", str(EVAL_EPISODES)])


def segment_reset_run(pair: str, seed: int, quick: bool) -> dict:
    """RATE's zoo model scored again with ``--reset-return-to-go-per-segment``; returns its JSON."""
    path = own_run_file(pair, SEGMENT_RESET, seed, quick)
    if not path.is_file():
        command = shlex.split(zoo_run(pair, "rate", seed, quick)["evaluations"][0]["command"])
        command += ["--reset-return-to-go-per-segment"]
        completed = subprocess.run([sys.executable, *command[1:]], cwd=REPO, capture_output=True, text=True, check=True)
        result = json.loads(completed.stdout.strip().splitlines()[-1])
        write_result({"command": shlex.join(command), "result": result}, path)
    return json.loads(path.read_text())


def zoo_score(result: dict) -> float:
    return result["evaluations"][0]["result"]["normalized_score"]


def own_run_file(pair: str, algo: str, seed: int, quick: bool) -> Path:
    """The JSON of a run this script makes itself (BC, IQL, RATE's model scored with the per-segment reset)."""
    return RESULTS / f"mujoco_{pair}_{algo}_seed{seed}{'_quick' if quick else ''}.json"


def run_score(pair: str, algo: str, seed: int, quick: bool) -> float:
    """A run's normalised score, running it first unless its JSON exists."""
    if algo == SEGMENT_RESET:
        return segment_reset_run(pair, seed, quick)["result"]["normalized_score"]
    if algo in ("rate", "dt"):
        return zoo_score(zoo_run(pair, algo, seed, quick))
    return d3rlpy_run(pair, algo, seed, quick)["normalized_score"]


def has_run(pair: str, algo: str, seed: int, quick: bool) -> bool:
    if algo in ("rate", "dt"):
        return rate_run_file(pair_env_id(*split_pair(pair)), RATE_CONFIG, algo, seed, quick).is_file()
    return own_run_file(pair, algo, seed, quick).is_file()


def gradient_steps(pair: str, quick: bool) -> int:
    from rate_sb3.zoo_checks import load_config

    return QUICK_STEPS if quick else int(load_config(str(RATE_CONFIG))[pair_env_id(*split_pair(pair))]["n_timesteps"])


def make_d3rlpy_algo(algo: str):
    import d3rlpy

    observations = d3rlpy.preprocessing.StandardObservationScaler()  # fitted to the dataset, as RATE's and DT's
    if algo == "bc":
        return d3rlpy.algos.BCConfig(observation_scaler=observations).create(device="cpu:0")
    rewards = d3rlpy.preprocessing.ReturnBasedRewardScaler(multiplier=1000.0)  # d3rlpy's IQL setting for MuJoCo
    return d3rlpy.algos.IQLConfig(observation_scaler=observations, reward_scaler=rewards).create(device="cpu:0")


def d3rlpy_run(pair: str, algo: str, seed: int, quick: bool) -> dict:
    """BC or IQL from d3rlpy, trained for the entry's gradient steps; returns its JSON."""
    import d3rlpy

    path = own_run_file(pair, algo, seed, quick)
    if path.is_file():
        return json.loads(path.read_text())
    d3rlpy.seed(seed)
    steps = gradient_steps(pair, quick)
    model = make_d3rlpy_algo(algo)
    started = time.perf_counter()
    model.fit(
        d3rlpy_dataset(load_minari(dataset_id(*split_pair(pair)))),
        n_steps=steps,
        n_steps_per_epoch=steps,
        show_progress=False,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
    )
    train_seconds = time.perf_counter() - started
    episodes = min(10, EVAL_EPISODES) if quick else EVAL_EPISODES
    env_id = MUJOCO_ENV_IDS[split_pair(pair)[0]]
    agent = D3rlpyAgent(model, gym.make(env_id).observation_space)
    evaluation = evaluate(agent, env_id, n_episodes=episodes, n_envs=EVAL_ENVS)  # episode j: seed j, as for RATE
    result = {
        "pair": pair,
        "algo": f"d3rlpy {algo.upper()} {d3rlpy.__version__}",
        "seed": seed,
        "gradient_steps": steps,
        "batch_size": model.config.batch_size,
        "episodes": episodes,
        "mean_return": evaluation["mean_return"],
        "normalized_score": evaluation["normalized_score"],
        "train_seconds": round(train_seconds, 1),
    }
    write_result(result, path)
    return result


def summarise(scores: dict[str, dict[str, list[float]]]) -> dict:
    result: dict = {"pairs": {}, "average": {}}
    for pair, by_algo in scores.items():
        if not any(by_algo.values()):
            continue
        entry: dict = {algo: float(np.mean(values)) for algo, values in by_algo.items() if values}
        entry["sem"] = {algo: sem(values) for algo, values in by_algo.items() if values}
        entry["n_seeds"] = min(len(values) for values in by_algo.values() if values)  # of those that ran
        result["pairs"][pair] = entry
    complete = [entry for entry in result["pairs"].values() if all(algo in entry for algo in ALGOS)]
    for algo in ALGOS:
        if complete:
            result["average"][algo] = float(np.mean([entry[algo] for entry in complete]))
    result["average"]["pairs"] = len(complete)
    both = [entry for entry in result["pairs"].values() if "rate" in entry and "dt" in entry]
    result["rate_at_least_dt"] = {"pairs": sum(entry["rate"] >= entry["dt"] for entry in both), "of": len(both)}
    if both:  # the comparison, over every pair where both ran
        result["average_rate_dt"] = {algo: float(np.mean([entry[algo] for entry in both])) for algo in ("rate", "dt")}
    return result


def markdown_table(summary: dict) -> str:
    """The summary as RESULTS shows it: mean (+- sem where several seeds ran) per pair, the paper's beside."""
    columns = ["rate", SEGMENT_RESET, "dt", "bc", "iql"]
    lines = [
        "| pair | RATE | RATE, reset every segment | DT | BC | IQL | seeds | paper RATE / DT |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pair, entry in summary["pairs"].items():
        cells = [format_score(entry.get(algo), entry["sem"].get(algo)) for algo in columns]
        paper = " / ".join(map(str, PAPER_SCORES[pair]))
        lines.append(f"| {pair} | {' | '.join(cells)} | {entry['n_seeds']} | {paper} |")
    average = summary["average"]
    cells = [format_score(average.get(algo), None) for algo in columns]
    lines.append(f"| average ({average['pairs']} pairs) | {' | '.join(cells)} | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=PAIRS)
    parser.add_argument("--algos", nargs="+", default=[*ALGOS, SEGMENT_RESET], choices=[*ALGOS, SEGMENT_RESET])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="hopper-medium from mujoco_datasets.py --quick, 1 seed")
    parser.add_argument("--summary-only", action="store_true", help="summarise the runs done, run nothing")
    parser.add_argument("--table", action="store_true", help="print the summary as a markdown table too")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.seeds = ["hopper-medium"], [0]
        os.environ["MINARI_DATASETS_PATH"] = str(QUICK_MINARI_ROOT)  # the zoo runs inherit it
        if not (QUICK_MINARI_ROOT / dataset_id("hopper", "medium")).exists():
            subprocess.run(
                [sys.executable, str(BENCHMARKS / "mujoco_datasets.py"), "--env", "hopper", "--quick"], check=True
            )
    scores: dict[str, dict[str, list[float]]] = {}
    for pair in args.pairs:
        scores[pair] = {algo: [] for algo in args.algos}
        for seed in args.seeds:
            for algo in args.algos:
                if args.summary_only and not has_run(pair, algo, seed, args.quick):
                    continue
                score = run_score(pair, algo, seed, args.quick)
                scores[pair][algo].append(score)
                print(f"{pair} {algo} seed {seed}: {score:.1f}", flush=True)
    summary = summarise(scores)
    if args.table:
        print(markdown_table(summary))
    write_result(summary, RESULTS / f"mujoco_offline{'_quick' if args.quick else ''}.json")


if __name__ == "__main__":
    main()
