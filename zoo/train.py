"""Train with the RL Zoo, RATE included: ``python zoo/train.py --algo rate --env TMaze-v0 [rl_zoo3 flags]``.

Every ``rl_zoo3.train`` flag works. ``--algo rate`` / ``--algo ppo_lstm`` read ``hyperparams/<algo>.yml`` of
this repo unless ``-conf/--conf-file`` is given; bad input (env id, YAML key, demonstrations) stops the run
before anything is built, with a message naming the flag, key or path. Relative demonstration paths in the
YAML (e.g. ``demos/tmaze.npz``) are resolved against the current directory: start runs from the repo root.

In a sweep (``-optimize``), a key set with ``-params`` (e.g. ``-params n_pretrain_steps:500``) is held fixed
instead of sampled.

Sweeps on a database (``-optimize --storage postgresql://...``) give each running trial a heartbeat: a trial
whose worker died is marked failed and retried by the next trial any worker starts. Flags of this script, not of
rl_zoo3: ``--heartbeat-interval S`` (default 60, 0 for none), ``--grace-period S`` (seconds without a heartbeat
before a trial counts as dead, default 2 x S), ``--max-retry N`` (default 3).
"""

import sys
from pathlib import Path

from rl_zoo3.train import train

import rate_sb3.envs  # noqa: F401  (registers TMaze-v0; importing rl_zoo3 registers the NoVel envs and MiniGrid)
from rate_sb3.zoo import command_line_hyperparams, prepare_train_argv, register
from rate_sb3.zoo_checks import ZooConfigError
from rate_sb3.zoo_sweeps import heartbeat_storage, pop_heartbeat_flags

CONFIG_DIR = Path(__file__).resolve().parents[1] / "hyperparams"


def main() -> None:
    try:
        argv, heartbeat = pop_heartbeat_flags(sys.argv)
        sys.argv = prepare_train_argv(argv, CONFIG_DIR)
    except ZooConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    register(held_fixed=command_line_hyperparams(sys.argv))  # a sweep samples what -params does not set
    with heartbeat_storage(heartbeat):
        train()


if __name__ == "__main__":
    main()
