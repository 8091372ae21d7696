"""Observations in SB3's terms: Dict observations, frame stacks, features extractors, and the space errors users
meet through ``RATE(...)``."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

from rate_sb3 import RATE, PrevRewardWrapper
from rate_sb3.buffers import hindsight_returns
from rate_sb3.data import Episode, load_episodes_npz, save_episodes, validate_episodes
from rate_sb3.evaluate import FrameStack, evaluate
from rate_sb3.extractors import CategoricalImageCNN, DictExtractor
from rate_sb3.observations import map_observations

TINY = dict(context_len=2, n_segments=2, d_model=16, n_layers=1, n_heads=2, n_mem_tokens=2, batch_size=4, seed=0)
LENGTH = 5
RETURN = 0.1 * sum(range(1, LENGTH + 1))  # the rewards 0.1 t of every episode
CUE_ENV = "RATETestCue-v0"


class CueEnv(gym.Env):
    """A cue in the first frame of a channel-last 7x7 image, optionally beside a vector in a Dict observation;
    the t-th step pays 0.1 t whatever the action, so that every episode returns the same."""

    def __init__(self, dict_observations: bool = True) -> None:
        image = spaces.Box(0, 255, (7, 7, 3), np.uint8)
        vector = spaces.Box(-1, 1, (2,), np.float32)
        self.observation_space = spaces.Dict({"image": image, "vector": vector}) if dict_observations else image
        self.action_space = spaces.Discrete(2)
        self.dict_observations = dict_observations

    def _observation(self):
        image = np.zeros((7, 7, 3), np.uint8)
        if self.t == 0:
            image[..., self.cue] = 255
        if not self.dict_observations:
            return image
        return {"image": image, "vector": np.array([self.t / LENGTH, self.cue - 0.5], np.float32)}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.cue = 0, int(self.np_random.integers(2))
        return self._observation(), {}

    def step(self, action):
        self.t += 1
        return self._observation(), 0.1 * self.t, self.t == LENGTH, False, {}


if CUE_ENV not in gym.registry:
    gym.register(CUE_ENV, entry_point=CueEnv)


def cue_episodes(n: int, dict_observations: bool = True) -> list[Episode]:
    """Episodes of the CueEnv, as the env gives them (channel-last), acting on the cue."""
    env, episodes = CueEnv(dict_observations), []
    for seed in range(n):
        observation, _ = env.reset(seed=seed)
        observations, rewards = [observation], []
        for _ in range(LENGTH):
            observation, reward, *_ = env.step(env.cue)
            observations.append(observation)
            rewards.append(reward)
        stacked = (
            {key: np.stack([o[key] for o in observations]) for key in observations[0]}
            if dict_observations
            else np.stack(observations)
        )
        episodes.append(Episode(stacked, np.full(LENGTH, env.cue), np.array(rewards), True, False))
    return episodes


def channel_first(episodes: list[Episode]) -> list[Episode]:
    """The episodes' images transposed as SB3's VecTransposeImage gives them to the model."""

    def transpose(values: np.ndarray) -> np.ndarray:
        return values.transpose(0, 3, 1, 2) if values.ndim == 4 else values

    return [
        Episode(map_observations(e.observations, transpose), e.actions, e.rewards, e.terminated, e.truncated)
        for e in episodes
    ]


def assert_same_predictions(model: RATE, other: RATE, observations) -> None:
    state = other_state = None
    for _ in range(3):
        actions, state = model.predict(observations, state, deterministic=True)
        other_actions, other_state = other.predict(observations, other_state, deterministic=True)
        np.testing.assert_array_equal(actions, other_actions)
    th.testing.assert_close(state.memory, other_state.memory)


def test_dict_observations_pretrain_learn_predict_save_load_and_evaluate(tmp_path):
    # an image plus a vector, as MiniGrid's {"image", "direction"}: SB3 refused the nested Dict RATE used to make
    episodes = channel_first(cue_episodes(4))
    path = tmp_path / "demos.npz"
    save_episodes(episodes, path)  # Dict observations round-trip through our npz format
    loaded = load_episodes_npz(path)
    for key in ("image", "vector"):
        np.testing.assert_array_equal(loaded[2].observations[key], episodes[2].observations[key])
    model = RATE("RATEPolicy", CUE_ENV, demonstrations=str(path), train_freq=5, gradient_steps=1, **TINY)
    assert set(model.observation_space.spaces) == {"image", "vector", "prev_reward"}
    model.pretrain(3)
    model.learn(12)  # online: Dict episodes recorded, replayed and trained on
    assert isinstance(model.replay_buffer.online[0].observations, dict)
    observations = model.env.reset()
    model.save(tmp_path / "model.zip")
    assert_same_predictions(model, RATE.load(tmp_path / "model.zip"), observations)
    result = evaluate(model, CUE_ENV, n_episodes=2)
    assert result["mean_length"] == LENGTH and result["mean_return"] == pytest.approx(RETURN)


def record_hidden(model: RATE) -> list[th.Tensor]:
    """Make ``predict`` also record the hidden states its action head acts on."""
    act, recorded = model.policy.action_head.act, []

    def recording_act(hidden: th.Tensor, deterministic: bool) -> th.Tensor:
        recorded.append(hidden.clone())
        return act(hidden, deterministic)

    model.policy.action_head.act = recording_act
    return recorded


@pytest.mark.parametrize("dict_observations", [True, False])
def test_frame_stacked_predict_equals_the_training_forward(dict_observations):
    # VecFrameStack stacks the previous reward too: predict must read the newest, and step by step give the
    # training forward's outputs on the episodes it recorded
    env = VecFrameStack(DummyVecEnv([lambda: PrevRewardWrapper(CueEnv(dict_observations))]), 2)
    model = RATE("RATEPolicy", env, target_return=RETURN, dropout=0.0, train_freq=10**6, **TINY)
    recorded = record_hidden(model)
    model.learn(2 * LENGTH)  # collects two episodes, trains on none
    policy = model.policy.eval()
    steps = th.cat(recorded).reshape(2, LENGTH, -1)
    padded = -(-LENGTH // policy.config.segment_len) * policy.config.segment_len
    for index, episode in enumerate(model.replay_buffer.online):
        pad = lambda x: np.concatenate([x[:LENGTH], np.zeros((padded - LENGTH, *x.shape[1:]), x.dtype)])  # noqa: E731
        with th.no_grad():
            hidden = policy.window_hidden(
                map_observations(episode.observations, lambda x: th.as_tensor(pad(x))[None]),  # noqa: B023
                policy.actions_to_model(th.as_tensor(pad(episode.actions))[None]),
                th.as_tensor(pad(hindsight_returns(episode.rewards) * policy.return_scale))[None],
                th.as_tensor(np.arange(padded) < LENGTH)[None],
            )[0, :LENGTH]
        th.testing.assert_close(steps[index], hidden, atol=1e-4, rtol=1e-4)
    # rate_sb3.evaluate stacks the frames as VecFrameStack did in training
    result = evaluate(model, CUE_ENV, {"dict_observations": dict_observations}, n_episodes=2, frame_stack=2)
    assert result["mean_length"] == LENGTH


def test_image_padding_is_not_encoded():
    # windows of short episodes are mostly padding: the CNN sees the valid frames only, with the same tokens
    model = RATE("RATEPolicy", CUE_ENV, demonstrations=channel_first(cue_episodes(2)), **TINY)
    encoder, frames_seen = model.policy.observation_encoder, []
    encoder.net[0].register_forward_hook(lambda module, inputs, output: frames_seen.append(len(output)))
    rng = np.random.default_rng(0)
    observations = {
        "image": th.as_tensor(rng.integers(0, 256, (3, 4, 3, 7, 7)), dtype=th.uint8),
        "vector": th.as_tensor(rng.standard_normal((3, 4, 2)), dtype=th.float32),
    }
    valid = th.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=th.bool)
    with th.no_grad():
        tokens, all_tokens = encoder.steps(observations, valid), encoder.steps(observations)
    assert frames_seen == [8, 12]
    th.testing.assert_close(tokens[valid], all_tokens[valid])
    assert not tokens[~valid].any()


def test_evaluate_stacks_frames_as_vec_frame_stack():
    make = lambda: PrevRewardWrapper(CueEnv())  # noqa: E731
    vec_env, env = VecFrameStack(DummyVecEnv([make]), 3), FrameStack(make(), 3)
    vec_env.seed(3)
    expected, (observation, _) = vec_env.reset(), env.reset(seed=3)
    for _ in range(LENGTH):
        assert observation.keys() == expected.keys()
        for key in expected:
            np.testing.assert_array_equal(observation[key], expected[key][0])
        expected, observation = vec_env.step(np.array([1]))[0], env.step(1)[0]


class TinyExtractor(BaseFeaturesExtractor):
    """A user's own features extractor, written for SB3: it sees the preprocessed Dict of the env's keys."""

    def __init__(self, observation_space: spaces.Dict, features_dim: int = 5) -> None:
        super().__init__(observation_space, features_dim)
        self.linear = th.nn.Linear(2, features_dim)

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        return self.linear(observations["vector"]) + observations["image"].mean((1, 2, 3))[:, None]


def test_a_users_features_extractor_is_used_unchanged(tmp_path):
    kwargs = dict(features_extractor_class=TinyExtractor, features_extractor_kwargs={"features_dim": 3})
    episodes = channel_first(cue_episodes(2))
    model = RATE(
        "RATEPolicy", CUE_ENV, demonstrations=episodes, policy_kwargs=kwargs, advantage_temperature=1.0, **TINY
    )
    for encoder in (model.policy.observation_encoder, model.policy.critic.observation_encoder):
        assert isinstance(encoder.net[0], TinyExtractor) and encoder.net[1].in_features == 3
    model.pretrain(2)
    model.save(tmp_path / "model.zip")
    loaded = RATE.load(tmp_path / "model.zip")
    assert isinstance(loaded.policy.observation_encoder.net[0], TinyExtractor)
    assert_same_predictions(model, loaded, model.env.reset())


class _Env(gym.Env):
    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, True, False, {}


BOX = spaces.Box(-1, 1, (2,), np.float32)


@pytest.mark.parametrize(
    "observation_space, action_space, message",
    [
        (BOX, spaces.Box(-np.inf, np.inf, (1,)), "bounded Box"),  # was SB3's bare AssertionError
        (spaces.Dict({"a": spaces.Dict({"b": BOX})}), spaces.Discrete(2), "cannot encode the key 'a'"),  # SB3's
        (spaces.Dict({"a": spaces.Text(4)}), spaces.Discrete(2), "cannot encode the key 'a'"),  # NotImplementedError
        (spaces.Dict({"prev_reward": BOX}), spaces.Discrete(2), "already has a key 'prev_reward'"),
        (BOX, spaces.MultiDiscrete([2, 2]), "action space"),
        (spaces.Box(0, 255, (16, 3, 16), np.uint8), spaces.Discrete(2), "channels.* in the middle"),
    ],
)
def test_unsupported_spaces_fail_in_rate_with_the_fix(observation_space, action_space, message):
    with pytest.raises(ValueError, match=message):
        RATE("RATEPolicy", _Env(observation_space, action_space), target_return=1.0, **TINY)


def test_gradient_steps_zero_is_rejected_in_the_constructor():
    with pytest.raises(ValueError, match="gradient_steps=0 must be >= 1"):
        RATE("RATEPolicy", _Env(BOX, spaces.Discrete(2)), target_return=1.0, gradient_steps=0, **TINY)


def test_multidiscrete_is_one_rule_for_the_policy_and_the_demonstrations():
    observation_space = spaces.MultiDiscrete([3, 4])
    model = RATE("RATEPolicy", _Env(observation_space, spaces.Discrete(2)), target_return=1.0, **TINY)
    actions, _ = model.predict({"observation": np.array([[2, 3]]), "prev_reward": np.zeros((1, 1))})
    assert actions.shape == (1,)
    episode = Episode(np.array([[0, 1], [2, 3]]), np.array([1]), np.array([1.0]), True, False)
    validate_episodes([episode], observation_space, spaces.Discrete(2))
    with pytest.raises(ValueError, match="action space"):
        validate_episodes([episode], observation_space, spaces.MultiDiscrete([2]))


def test_predict_rejects_images_it_cannot_read():
    float_images = spaces.Box(0.0, 1.0, (3, 7, 7), np.float32)
    model = RATE("RATEPolicy", _Env(float_images, spaces.Discrete(2)), target_return=1.0, **TINY)
    prev_reward = np.zeros((1, 1), np.float32)
    with pytest.raises(ValueError, match=r"outside its space's bounds .*divide by 255"):
        model.predict({"observation": np.full((1, 3, 7, 7), 255.0, np.float32), "prev_reward": prev_reward})
    with pytest.raises(ValueError, match=r"observation 'observation' has shape \(7, 3, 7\).*expects \(3, 7, 7\)"):
        model.predict({"observation": np.zeros((1, 7, 3, 7), np.float32), "prev_reward": prev_reward})


def test_categorical_images_need_raw_indices_in_range():
    grid = spaces.Box(0, 255, (3, 7, 7), np.uint8)  # MiniGrid declares 255; its indices stay below 11
    kwargs = dict(features_extractor_class=CategoricalImageCNN, features_extractor_kwargs={"n_categories": (11, 6, 3)})
    with pytest.raises(ValueError, match="normalize_images=False"):
        RATE("RATEPolicy", _Env(grid, spaces.Discrete(2)), target_return=1.0, policy_kwargs=kwargs, **TINY)
    kwargs["normalize_images"] = False
    model = RATE("RATEPolicy", _Env(grid, spaces.Discrete(2)), target_return=1.0, policy_kwargs=kwargs, **TINY)
    images = np.zeros((1, 3, 7, 7), np.uint8)
    model.predict({"observation": images, "prev_reward": np.zeros((1, 1))})
    images[0, 1, 3, 3] = 6
    with pytest.raises(ValueError, match=r"outside n_categories=\(11, 6, 3\)"):
        model.predict({"observation": images, "prev_reward": np.zeros((1, 1))})


def test_extractor_arguments_that_do_not_fit_the_space_are_named():
    grid = spaces.Box(0, 255, (3, 7, 7), np.uint8)
    with pytest.raises(ValueError, match=r"n_categories=\(11, 6\) must give one count per channel .*\(3, 7, 7\)"):
        CategoricalImageCNN(grid, (11, 6))
    dict_space = spaces.Dict({"image": grid, "direction": spaces.Discrete(4)})
    with pytest.raises(ValueError, match=r"categorical_images keys \['grid'\] are not in"):
        DictExtractor(dict_space, categorical_images={"grid": (11, 6, 3)})


def test_a_dict_episode_whose_arrays_differ_in_length_is_refused():
    observations = {"image": np.zeros((4, 3, 7, 7), np.uint8), "direction": np.zeros(3, np.int64)}
    with pytest.raises(ValueError, match=r"differ in length: \{'image': 4, 'direction': 3\}"):
        Episode(observations, np.zeros(3, np.int64), np.zeros(3), True, False)
