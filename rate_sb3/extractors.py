"""SB3 features extractors for RATE's observation tokens: the defaults chosen from a space, a CNN for small images,
an embedding of images of category indices, and a combination for Dict spaces."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor, NatureCNN
from torch import nn

NATURE_CNN_MIN_SIZE = 36  # NatureCNN's 8x8/4, 4x4/2, 3x3/1 convolutions need images at least this large


class SmallImageCNN(BaseFeaturesExtractor):
    """Two 3x3 convolutions for channel-first images smaller than NatureCNN takes (MiniGrid's 7x7 views).

    :param observation_space: a channel-first image space
    """

    def __init__(self, observation_space: spaces.Box) -> None:
        channels = observation_space.shape[0]
        convs = [nn.Conv2d(channels, 32, 3, 1, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, 1), nn.ReLU()]
        cnn = nn.Sequential(*convs, nn.Flatten())
        with th.no_grad():
            n_flat = cnn(th.zeros(1, *observation_space.shape)).shape[1]
        super().__init__(observation_space, n_flat)
        self.cnn = cnn

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.cnn(observations)


class CategoricalImageCNN(BaseFeaturesExtractor):
    """Channel-first images whose channels hold category indices, not intensities (MiniGrid's object, colour and
    state): each channel's index is embedded, and a CNN (:class:`SmallImageCNN`, or NatureCNN from 36 pixels) runs
    over the embeddings. It reads raw indices: build the policy with ``normalize_images=False``.

    :param observation_space: channel-first images of indices
    :param n_categories: categories of each channel (MiniGrid: ``(11, 6, 3)``)
    :param embedding_dim: embedding width of each channel
    """

    reads_raw_indices = True

    def __init__(self, observation_space: spaces.Box, n_categories: Sequence[int], embedding_dim: int = 8) -> None:
        channels, height, width = observation_space.shape
        if len(n_categories) != channels:
            raise ValueError(
                f"CategoricalImageCNN: n_categories={tuple(n_categories)} must give one count per channel of the "
                f"channel-first images {observation_space.shape}"
            )
        embedded = spaces.Box(-np.inf, np.inf, (channels * embedding_dim, height, width), np.float32)
        cnn = SmallImageCNN(embedded) if min(height, width) < NATURE_CNN_MIN_SIZE else NatureCNN(embedded, 256, True)
        super().__init__(observation_space, cnn.features_dim)
        self.n_categories = tuple(int(n) for n in n_categories)
        self.register_buffer("offsets", th.tensor(np.cumsum([0, *self.n_categories[:-1]])).view(1, -1, 1, 1))
        self.embedding = nn.Embedding(sum(self.n_categories), embedding_dim)
        self.cnn = cnn

    def forward(self, observations: th.Tensor) -> th.Tensor:
        indices = observations.long()
        too_large = indices >= th.tensor(self.n_categories, device=indices.device).view(1, -1, 1, 1)
        if too_large.any() or (indices < 0).any():
            raise ValueError(
                f"CategoricalImageCNN: image indices outside n_categories={self.n_categories} (largest per channel: "
                f"{indices.amax((0, 2, 3)).tolist()}): give n_categories that cover the env's indices"
            )
        embedded = self.embedding(indices + self.offsets)  # (B, C, H, W, e)
        return self.cnn(embedded.permute(0, 1, 4, 2, 3).flatten(1, 2))


class DictExtractor(BaseFeaturesExtractor):
    """SB3's ``CombinedExtractor`` rule for Dict observations (a CNN per image, flattening for the rest,
    concatenated in key order), with each key's default extractor of :func:`default_features_extractor`, so that
    small images get :class:`SmallImageCNN` where ``CombinedExtractor``'s NatureCNN would fail.

    :param observation_space: a Dict of supported spaces
    :param cnn_output_dim: features of each NatureCNN
    :param categorical_images: keys of images of category indices, with the categories of each channel
        (:class:`CategoricalImageCNN`; MiniGrid: ``{"image": (11, 6, 3)}``)
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        cnn_output_dim: int = 256,
        categorical_images: dict[str, Sequence[int]] | None = None,
    ) -> None:
        categorical_images = categorical_images or {}
        unknown = sorted(set(categorical_images) - set(observation_space.spaces))
        if unknown:
            raise ValueError(f"DictExtractor: categorical_images keys {unknown} are not in {observation_space}")
        extractors = {}
        for key, subspace in observation_space.spaces.items():
            if key in categorical_images:
                extractors[key] = CategoricalImageCNN(subspace, categorical_images[key])
                continue
            extractor_class = default_features_extractor(subspace)
            kwargs = {"features_dim": cnn_output_dim} if extractor_class is NatureCNN else {}
            extractors[key] = extractor_class(subspace, **kwargs)
        super().__init__(observation_space, sum(extractor.features_dim for extractor in extractors.values()))
        self.extractors = nn.ModuleDict(extractors)
        self.reads_raw_indices = bool(categorical_images)

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        return th.cat([extractor(observations[key]) for key, extractor in self.extractors.items()], dim=1)


def default_features_extractor(space: spaces.Space) -> type[BaseFeaturesExtractor]:
    """SB3's defaults: NatureCNN for images (:class:`SmallImageCNN` below 36 pixels), :class:`DictExtractor`
    for Dict spaces, FlattenExtractor for the rest."""
    if isinstance(space, spaces.Dict):
        return DictExtractor
    if is_image_space(space):
        return NatureCNN if min(space.shape[1:]) >= NATURE_CNN_MIN_SIZE else SmallImageCNN
    return FlattenExtractor
