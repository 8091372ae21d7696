"""Run every benchmark, then the plots: ``python benchmarks/run_all.py [--quick]``.

``--quick`` (about 5 minutes on 2 CPU cores, measured) writes the ``*_quick.json`` / ``*_quick.png`` smoke
results. The full mode reproduces the benchmark numbers of ``RESULTS.md`` sections 1 to 4, each seed and variant
of the tables (the zoo runs of section 5 are ``benchmarks/zoo_result.py`` commands): about 13 hours on 2 CPU
cores, estimated from the single runs' ``seconds``: T-Maze pretraining (17 runs of 9 to 17 minutes, about 4
hours), the online runs (12 runs, about 8 hours: T-Maze fine-tuning and CartPole from scratch take about 50
minutes a seed, 25 with 50 gradient steps) and MiniGrid (about 20 minutes).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def online_seeds(*flags: str, baseline: bool = True) -> list[list[str]]:
    """Seeds 0, 1 and 2 of an online setting; RecurrentPPO trains beside seed 0 only (if ``baseline``)."""
    return [
        ["online_finetune.py", *flags, "--seed", str(seed), *([] if seed == 0 and baseline else ["--skip-baseline"])]
        for seed in (0, 1, 2)
    ]


QUICK = [
    ["tmaze_memory.py", "--quick", "--mode", "rate"],
    ["tmaze_memory.py", "--quick", "--mode", "dt"],
    ["training_speed.py", "--quick"],
    ["inference_speed.py", "--quick"],
    ["online_finetune.py", "--quick", "--task", "tmaze"],
    ["online_finetune.py", "--quick", "--task", "cartpole"],
    ["minigrid_memory.py", "--quick"],
    ["image_memory.py", "--quick"],
    ["plot_results.py", "--quick"],
]

FULL = [
    *(
        ["tmaze_memory.py", "--mode", "rate", "--memory-grad", grad, "--seed", str(seed)]
        for grad in ("bptt", "detach")
        for seed in (0, 1, 2)
    ),
    # DT's single 150-step segment costs about 4x more per step: 1,500 steps take about 16 min, rate's 4,000 about 10
    *(["tmaze_memory.py", "--mode", "dt", "--steps", "1500", "--seed", str(seed)] for seed in (0, 1, 2)),
    ["tmaze_memory.py", "--mode", "rate", "--no-curriculum", "--seed", "0"],
    ["tmaze_memory.py", "--mode", "rate", "--no-curriculum", "--seed", "1"],
    *(["tmaze_memory.py", "--mode", mode, "--seed", str(seed)] for mode in ("rmt", "trxl") for seed in (0, 1, 2)),
    ["training_speed.py"],
    ["inference_speed.py"],
    *online_seeds("--task", "tmaze", baseline=False),
    *online_seeds("--task", "tmaze", "--gradient-steps", "50"),
    ["online_finetune.py", "--task", "tmaze-scratch", "--skip-baseline"],
    *online_seeds("--task", "cartpole"),
    *online_seeds("--task", "cartpole-scratch"),
    ["online_finetune.py", "--task", "cartpole-scratch", "--no-critic", "--gradient-steps", "20"],
    ["minigrid_memory.py"],
    ["minigrid_memory.py", "--raw-indices", "--steps", "1500"],
    ["image_memory.py", "--steps", "5"],
    ["plot_results.py"],
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke runs of every benchmark (< 15 min)")
    args = parser.parse_args()
    started = time.perf_counter()
    failures = []
    for command in QUICK if args.quick else FULL:
        print(f"== {' '.join(command)}", flush=True)
        step_started = time.perf_counter()
        completed = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]], cwd=HERE.parent)
        print(f"== {command[0]}: exit {completed.returncode}, {time.perf_counter() - step_started:.0f} s", flush=True)
        if completed.returncode != 0:
            failures.append(" ".join(command))
    print(f"all benchmarks: {time.perf_counter() - started:.0f} s")
    if failures:
        sys.exit("failed: " + "; ".join(failures))


if __name__ == "__main__":
    main()
