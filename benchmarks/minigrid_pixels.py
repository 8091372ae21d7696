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
from pathlib import Path

from common import RESULTS, write_result
from zoo_result import rate_run_file, run_rate_once

BENCHMARKS = Path(__file__).resolve().parent
CONFIG = BENCHMARKS.parent / "hyperparams" / "rate_pixels.yml"
ENVS = ("MiniGrid-MemoryS7-v0", "MiniGrid-MemoryS13Random-v0")
MODES = ("rate", "dt")


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
            evaluation = run_rate_once(env, CONFIG, mode, args.seed, args.quick)["evaluations"][0]["result"]
            result[env][mode] = evaluation["success_rate"]
            result["runs"][f"{env} {mode}"] = rate_run_file(env, CONFIG, mode, args.seed, args.quick).name
    write_result(result, RESULTS / f"minigrid_pixels{'_quick' if args.quick else ''}.json")


if __name__ == "__main__":
    main()
