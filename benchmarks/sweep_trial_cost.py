"""CPU seconds per pretraining step of a CartPoleNoVel-v1 sweep trial: at the entry's architecture and at the largest
the Optuna search space samples (the README's "What a trial costs").

One torch thread, process time (a busy machine inflates it far less than wall time). Run from the repo root:
``python benchmarks/sweep_trial_cost.py [--steps 10]``; the demonstrations are recorded into ``demos/`` on first use.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import rl_zoo3.import_envs  # noqa: F401  (registers CartPoleNoVel-v1)
import torch as th
import yaml

from rate_sb3 import RATE
from rate_sb3.zoo import SEARCH_SPACE

ENV_ID = "CartPoleNoVel-v1"
ARCHITECTURE = ("batch_size", "context_len", "n_segments", "d_model", "n_layers", "n_heads", "n_mem_tokens", "dropout")
SIZE_KEYS = ("batch_size", "context_len", "n_mem_tokens", "n_layers", "n_heads", "d_model")


def cpu_seconds_per_step(entry: dict, architecture: dict, n_steps: int) -> float:
    model = RATE(
        "RATEPolicy",
        ENV_ID,
        demonstrations=entry["demonstrations"],
        target_return=entry["target_return"],
        warmup_steps=1,
        **architecture,
    )
    model.pretrain(1)  # loads the demonstrations and warms up
    start = time.process_time()
    model.pretrain(n_steps)
    return (time.process_time() - start) / n_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed pretraining steps per architecture")
    args = parser.parse_args()
    th.set_num_threads(1)
    entry = yaml.safe_load((Path(__file__).resolve().parents[1] / "hyperparams" / "rate.yml").read_text())[ENV_ID]
    own = {key: entry[key] for key in ARCHITECTURE}
    largest = dict(own, **{key: max(SEARCH_SPACE[key]) for key in SIZE_KEYS})
    for name, architecture in (("entry", own), ("largest sampled", largest)):
        seconds = cpu_seconds_per_step(entry, architecture, args.steps)
        print(f"{name} {architecture}: {seconds:.3f} CPU s per pretraining step", flush=True)


if __name__ == "__main__":
    main()
