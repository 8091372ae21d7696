"""MiniGrid-Memory from pixels: RATE and DT on the same oracle data and budget, trained through the zoo.

    python benchmarks/minigrid_pixels.py            # 4 zoo runs (S7 and S13Random, RATE and DT), hours on 2 cores
    python benchmarks/minigrid_pixels.py --quick    # smoke runs of a few steps (minutes)

Each run is ``benchmarks/zoo_result.py --conf-file hyperparams/rate_pixels.yml --env ENV --algo rate [--mode dt]``:
``zoo/train.py`` trains the entry (RGB views of 56x56 pixels, SB3's NatureCNN, offline on the look-first oracle's
episodes) and ``python -m rate_sb3.evaluate`` scores it over 100 episodes. A run whose JSON exists is not run
again, so a cut benchmark resumes where it stopped. Writes ``benchmarks/results/minigrid_pixels.json`` as
``{env: {"rate": success, "dt": success}}`` (with ``"runs"``: the JSON file of each) and prints it last.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import RESULTS, write_result
from zoo_result import result_name

BENCHMARKS = Path(__file__).resolve().parent
CONFIG = BENCHMARKS.parent / "hyperparams" / "rate_pixels.yml"
ENVS = ("MiniGrid-MemoryS7-v0", "MiniGrid-MemoryS13Random-v0")
MODES = ("rate", "dt")


def run_file(env: str, mode: str, seed: int, quick: bool) -> Path:
    """The JSON that ``zoo_result.py`` names for this run."""
    dt_mode = mode if mode == "dt" else None
    run = argparse.Namespace(env=env, algo="rate", conf_file=CONFIG, mode=dt_mode, seed=seed, quick=quick)
    return RESULTS / f"{result_name(run)}.json"


def run(env: str, mode: str, args: argparse.Namespace) -> dict:
    path = run_file(env, mode, args.seed, args.quick)
    if not path.is_file():
        command = [sys.executable, str(BENCHMARKS / "zoo_result.py"), "--conf-file", str(CONFIG), "--env", env]
        command += ["--algo", "rate", "--seed", str(args.seed), "--out", str(path)]
        command += (["--mode", "dt"] if mode == "dt" else []) + (["--quick"] if args.quick else [])
        subprocess.run(command, check=True)
    return json.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke runs: a few steps, 10 evaluation episodes")
    args = parser.parse_args()
    result: dict = {"runs": {}}
    for env in args.envs:
        result[env] = {}
        for mode in MODES:
            evaluation = run(env, mode, args)["evaluations"][0]["result"]
            result[env][mode] = evaluation["success_rate"]
            result["runs"][f"{env} {mode}"] = run_file(env, mode, args.seed, args.quick).name
    write_result(result, RESULTS / f"minigrid_pixels{'_quick' if args.quick else ''}.json")


if __name__ == "__main__":
    main()
