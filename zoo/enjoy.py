"""Watch or replay a trained agent, RATE included: ``python zoo/enjoy.py --algo rate --env TMaze-v0 -f logs``.

Every ``rl_zoo3.enjoy`` flag works. The hyperparameters and wrappers come from the run folder's
``config.yml`` (written by ``zoo/train.py``), so enjoy takes no ``--conf-file``.
"""

from rl_zoo3.enjoy import enjoy

import rate_sb3.envs  # noqa: F401  (registers TMaze-v0; importing rl_zoo3 registers the NoVel envs and MiniGrid)
from rate_sb3.zoo import register


def main() -> None:
    register()
    enjoy()


if __name__ == "__main__":
    main()
