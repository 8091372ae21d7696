"""What ``predict`` takes of each observation array: channel-last images transposed, shapes and float image bounds
checked, with messages that name the key."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space, maybe_transpose


class PredictInput(NamedTuple):
    """One observation array the policy takes (the observation, or a key of a Dict), with the checks it gets."""

    key: str
    space: spaces.Space
    image: bool  # channel-last images are transposed
    bounded_floats: bool  # float images are checked against their bounds

    @classmethod
    def of(cls, key: str, space: spaces.Space) -> PredictInput:
        bounded_floats = (
            isinstance(space, spaces.Box)
            and len(space.shape) == 3
            and space.dtype.kind == "f"
            and bool(np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)))
        )
        return cls(key, space, is_image_space(space), bounded_floats)

    def check(self, values: Any, vectorized: bool) -> np.ndarray:
        """The array as the encoder takes it (n, *shape): channel-first, checked."""
        values, space = np.asarray(values), self.space
        if self.image:
            # channel-last images from an env without VecTransposeImage (rl_zoo3 enjoy) become channel-first
            values = maybe_transpose(values, space)
        if not vectorized:
            values = values[None]
        if values.shape[1:] != space.shape:
            raise ValueError(
                f"RATEPolicy.predict: observation {self.key!r} has shape {values.shape[1:]} per env, the model "
                f"expects {space.shape}"
                + (" (channel-first; channel-last images are transposed)" if self.image else "")
            )
        if self.bounded_floats and ((values < space.low).any() or (values > space.high).any()):
            raise ValueError(
                f"RATEPolicy.predict: image observation {self.key!r} holds values in [{values.min()}, "
                f"{values.max()}], outside its space's bounds [{space.low.min()}, {space.high.max()}]: scale the "
                "images as the space declares (e.g. divide by 255 for [0, 1]) or declare the bounds the env gives"
            )
        return values
