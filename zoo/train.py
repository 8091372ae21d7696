"""Train with the RL Zoo, RATE included: ``python zoo/train.py --algo rate --env TMaze-v0 [rl_zoo3 flags]``.

Every ``rl_zoo3.train`` flag works. ``--algo rate`` / ``--algo ppo_lstm`` read ``hyperparams/<algo>.yml`` of
this repo unless ``-conf/--conf-file`` is given; bad input (env id, YAML key, demonstrations) stops the run
before anything is built, with a message naming the flag, key or path. Relative demonstration paths in the
YAML (e.g. ``demos/tmaze.npz``) are resolved against the current directory: start runs from the repo root.
"""

import sys
from pathlib import Path

from rl_zoo3.train import train

import rate_sb3.envs  # noqa: F401  (registers TMaze-v0; importing rl_zoo3 registers the NoVel envs and MiniGrid)
from rate_sb3.zoo import prepare_train_argv, register
from rate_sb3.zoo_checks import ZooConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "hyperparams"


def main() -> None:
    register()
    try:
        sys.argv = prepare_train_argv(sys.argv, CONFIG_DIR)
    except ZooConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    train()


if __name__ == "__main__":
    main()
