"""What our episode files share, ``.npz`` and HDF5 alike: the flat arrays' names and their consistency check, and
the mode of a new file; and what every reader of a demonstration format shares: building an :class:`Episode` and
refusing fields RATE does not take, with the source named."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from rate_sb3.episode import Episode

NPZ_FORMAT_VERSION = 2  # 2: Dict observations, one array per key (files of array observations are still 1)
NPZ_KEYS = (
    "observations",
    "actions",
    "rewards",
    "episode_lengths",
    "terminated",
    "truncated",
    "format_version",
)
RECOLLECT_HINT = "Re-collect the demonstrations with rate_sb3.collect_episodes and save_episodes."


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process umask (read by setting it and back)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def check_flat_episode_arrays(arrays: dict[str, np.ndarray], path: Path, max_version: int = NPZ_FORMAT_VERSION) -> None:
    """Raise a ValueError naming ``path`` when keys are missing, the format is newer than ``max_version`` or
    lengths disagree (in our ``.npz`` files and HDF5 image datasets alike)."""
    missing = [key for key in NPZ_KEYS if key not in arrays]
    if missing:
        raise ValueError(f"{path} lacks the arrays {missing} of a RATE demonstration file. {RECOLLECT_HINT}")
    version = arrays["format_version"]
    if version.size != 1 or not np.issubdtype(version.dtype, np.integer):
        raise ValueError(f"{path} has a malformed format_version {version!r}. {RECOLLECT_HINT}")
    if int(version) > max_version:
        raise ValueError(
            f"{path} has format_version {int(version)} but this rate_sb3 reads up to {max_version}: upgrade rate_sb3."
        )
    lengths = arrays["episode_lengths"]
    n_episodes = len(lengths)
    problems = []
    if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer) or np.any(lengths < 1):
        problems.append("episode_lengths must be a 1-D array of positive integers")
    else:
        n_steps = int(lengths.sum())
        expected = {
            "observations": n_steps + n_episodes,
            "actions": n_steps,
            "rewards": n_steps,
            "terminated": n_episodes,
            "truncated": n_episodes,
        }
        named = [(key, arrays[key]) for key in expected if key != "observations"]
        observations = arrays["observations"]
        if isinstance(observations, dict):
            named += [(f"observations.{key}", values) for key, values in observations.items()]
        else:
            named.append(("observations", observations))
        problems += [
            f"{name} has length {len(values)}, expected {expected[name.split('.')[0]]}"
            for name, values in named
            if values.ndim == 0 or len(values) != expected[name.split(".")[0]]
        ]
    if problems:
        raise ValueError(f"{path} is inconsistent: {'; '.join(problems)}. {RECOLLECT_HINT}")


def make_episode(source: str, index: int, **fields: Any) -> Episode:
    """Build an Episode, naming the source and episode index if its fields are inconsistent."""
    try:
        return Episode(**fields)
    except ValueError as error:
        raise ValueError(f"{source}: episode {index}: {error}") from error


def field_array(value: Any, what: str, source: str) -> np.ndarray:
    """The array of a dataset field; a Dict or Tuple (which RATE does not take for actions) is refused."""
    if isinstance(value, (dict, tuple)):
        raise ValueError(
            f"{source}: {what} are a {type(value).__name__} (Dict/Tuple space), which RATE does not support for "
            f"{what}: record the dataset with a Box or Discrete space."
        )
    return np.asarray(value)
