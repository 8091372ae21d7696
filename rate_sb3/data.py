"""Demonstrations for RATE: loading and validation of :class:`~rate_sb3.episode.Episode` lists (re-exported here).

Demonstrations come from our ``.npz`` files (:func:`save_episodes`), local Minari datasets,
imitation-library datasets, or are collected by running a policy or a privileged expert
(:func:`rate_sb3.collect.collect_episodes`). :func:`load_demonstrations` picks the right loader.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first

from rate_sb3.demo_formats import load_demonstrations, load_episodes_npz, load_imitation, save_episodes
from rate_sb3.encoders import check_spaces
from rate_sb3.episode import Episode
from rate_sb3.lazy_frames import LazyFrames
from rate_sb3.minari_format import load_minari, save_minari

__all__ = [
    "Episode",
    "load_demonstrations",
    "load_episodes_npz",
    "load_imitation",
    "load_minari",
    "save_episodes",
    "save_minari",
    "validate_episodes",
]

# Observations larger than this many elements are bounds-checked on a strided sample of steps.
MAX_BOUNDS_CHECKED_ELEMENTS = 4_000_000
# Frames read lazily from disk are checked (NaN, bounds) on this many evenly spaced steps, not all of them.
LAZY_CHECKED_STEPS = 16
_DIFFERENT_ENV_HINT = (
    "The demonstrations were probably recorded on a different env or wrapper: "
    "re-collect them on the training env with rate_sb3.collect_episodes."
)


# --------------------------------------------------------------------------------------------------------
# Validation against the env's spaces
# --------------------------------------------------------------------------------------------------------


def _integer_range(space: spaces.Space) -> tuple[np.ndarray, np.ndarray] | None:
    """Inclusive (low, high) of an integer space, or None for Box."""
    if isinstance(space, spaces.Discrete):
        return np.asarray(space.start), np.asarray(space.start + space.n - 1)
    if isinstance(space, spaces.MultiDiscrete):
        return space.start, space.start + space.nvec - 1
    if isinstance(space, spaces.MultiBinary):
        return np.zeros(space.shape), np.ones(space.shape)
    return None


def _dtype_fits(data_dtype: np.dtype, space: spaces.Space) -> bool:
    """Integer data fits any numeric space; float data fits only float Box spaces."""
    if data_dtype.kind in "biu":
        return True
    return isinstance(space, spaces.Box) and data_dtype.kind == "f" and space.dtype.kind == "f"


def _first_bad_step(mask: np.ndarray) -> int:
    return int(np.argmax(mask.reshape(len(mask), -1).any(axis=1)))


def _out_of_bounds(values: np.ndarray, space: spaces.Space) -> np.ndarray:
    """Per-element mask of values outside the space (with a small tolerance for Box bounds)."""
    integer_range = _integer_range(space)
    if integer_range is not None:
        low, high = integer_range
        return (values < low) | (values > high)
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    return (values < low - _bound_tolerance(low)) | (values > high + _bound_tolerance(high))


def _bound_tolerance(bound: np.ndarray) -> np.ndarray:
    """Slack allowed past a Box bound, for float rounding (infinite bounds never bind)."""
    return 1e-6 + 1e-5 * np.abs(np.where(np.isfinite(bound), bound, 0.0))


def _frames_mismatch(data_shape: tuple[int, ...], space: spaces.Box) -> tuple[str, str]:
    """What differs between a dataset's frames and the env's, and how to make them agree (the problem, the fix)."""
    env_shape = space.shape
    problem = f"has frames of per-step shape {data_shape}, but the env (after its wrappers and frame stack) expects "
    problem += str(env_shape)
    fix = (
        "Record the dataset on the env it trains on (Atari: python benchmarks/atari_datasets.py --game GAME), or give "
        "the env the dataset's frames: in a zoo entry, frame_stack (frames per stack) and env_wrapper (AtariWrapper "
        "makes them 84x84 grayscale)."
    )
    env_first = is_image_space_channels_first(space)
    layout = "channel-first (channels, height, width)" if env_first else "channel-last (height, width, channels)"
    if len(data_shape) != 3:
        return f"{problem}: the env's frames are {layout} images", fix
    moved = (env_shape[1], env_shape[2], env_shape[0]) if env_first else (env_shape[2], env_shape[0], env_shape[1])
    if data_shape == moved:
        order, axes = ("channel-last", "-1, 1") if env_first else ("channel-first", "1, -1")
        return f"{problem}: the dataset's frames are {order}, the env's {layout}", (
            f"Store the frames as the env gives them: np.moveaxis(frames, {axes}) on each episode's (T, ...) array."
        )
    (data_channels, *data_size), (env_channels, *env_size) = [
        (shape[0], *shape[1:]) if env_first else (shape[2], *shape[:2]) for shape in (data_shape, env_shape)
    ]
    if data_size == env_size:
        return f"{problem}: {_channels(data_channels)} in the dataset, {_channels(env_channels)} in the env", fix
    return f"{problem}: frames of {data_size[0]}x{data_size[1]} pixels, {env_size[0]}x{env_size[1]} in the env", fix


def _channels(n_channels: int) -> str:
    """How ``n_channels`` stacked channels read: grayscale frames, or RGB ones when they divide by 3."""
    rgb = f" or {n_channels // 3} stacked RGB frame{'s' if n_channels > 3 else ''}" if n_channels % 3 == 0 else ""
    return f"{n_channels} stacked grayscale frame{'s' if n_channels > 1 else ''}{rgb}"


def _check_field(
    values: np.ndarray, space: spaces.Space, field: str, index: int, source: str, check_bounds: bool
) -> None:
    def fail(problem: str, fix: str = _DIFFERENT_ENV_HINT) -> ValueError:
        return ValueError(f"{source}: episode {index} field '{field}' {problem}. {fix}")

    if values.shape[1:] != space.shape and is_image_space(space, check_channels=False):
        raise fail(*_frames_mismatch(values.shape[1:], space))
    if values.shape[1:] != space.shape:
        raise fail(f"has per-step shape {values.shape[1:]} but the space {space} expects {space.shape}")
    if not _dtype_fits(values.dtype, space):
        raise fail(
            f"has dtype {values.dtype}, which cannot be cast safely to the space {space}",
            "Store raw env data, not scaled or normalized values: integers for image, Discrete and "
            "MultiDiscrete spaces (e.g. values.astype(np.int64)).",
        )
    sample_stride = -(-len(values) // LAZY_CHECKED_STEPS) if isinstance(values, LazyFrames) else 1
    values = values[::sample_stride]
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        step = sample_stride * _first_bad_step(~np.isfinite(values))
        raise fail(f"holds NaN or inf at step {step}", "Drop or fix that episode.")
    if not check_bounds:
        return
    stride = max(1, values.size // MAX_BOUNDS_CHECKED_ELEMENTS)
    outside = _out_of_bounds(values[::stride], space)
    if np.any(outside):
        raise fail(f"is outside the space {space} at step {sample_stride * stride * _first_bad_step(outside)}")


def _check_observations(
    observations: np.ndarray | dict[str, np.ndarray], space: spaces.Space, index: int, source: str
) -> None:
    if not isinstance(space, spaces.Dict):
        if isinstance(observations, dict):
            raise ValueError(
                f"{source}: episode {index} field 'observations' is a dict (keys {sorted(observations)}) but the "
                f"observation space {space} is not a Dict. {_DIFFERENT_ENV_HINT}"
            )
        _check_field(observations, space, "observations", index, source, True)
        return
    keys = sorted(observations) if isinstance(observations, dict) else None
    if keys != sorted(space.spaces):
        raise ValueError(
            f"{source}: episode {index} field 'observations' must be a dict with the keys {sorted(space.spaces)} of "
            f"the Dict observation space, got {keys if keys is not None else 'one array'}. {_DIFFERENT_ENV_HINT}"
        )
    for key, subspace in space.spaces.items():
        _check_field(observations[key], subspace, f"observations[{key!r}]", index, source, True)


def validate_episodes(
    episodes: Sequence[Episode],
    observation_space: spaces.Space,
    action_space: spaces.Space,
    source: str = "demonstrations",
) -> None:
    """
    Check that demonstrations match an env's spaces, raising a ValueError that names the episode and field.

    Checked: observation and action shapes, dtypes that cast safely (integer data may fill float Box
    spaces, float data may not fill integer spaces), NaN/inf in observations, actions and rewards,
    observations inside a Box's finite bounds (a strided sample for very large data; for observations read
    lazily from an image dataset, NaN and bounds on 16 evenly spaced steps, so validation never reads them all) and
    integer actions/observations inside Discrete, MultiDiscrete and MultiBinary ranges.
    Continuous actions are not bounds-checked.

    :param episodes: The demonstrations.
    :param observation_space: The env's observation space.
    :param action_space: The env's action space.
    :param source: Where the episodes come from, used in error messages.
    """
    check_spaces(observation_space, action_space)
    if len(episodes) == 0:
        raise ValueError(f"no episodes in {source}")
    for index, episode in enumerate(episodes):
        if not isinstance(episode, Episode):
            raise ValueError(f"{source}: episode {index} is a {type(episode).__name__}, not an Episode.")
        _check_observations(episode.observations, observation_space, index, source)
        check_action_bounds = not isinstance(action_space, spaces.Box)
        _check_field(episode.actions, action_space, "actions", index, source, check_action_bounds)
        if not np.all(np.isfinite(episode.rewards)):
            step = _first_bad_step(~np.isfinite(episode.rewards))
            raise ValueError(
                f"{source}: episode {index} field 'rewards' holds NaN or inf at step {step}. Drop or fix that episode."
            )
