"""RATEPolicy: stateful predict against the training forward, batching, spaces and bad input."""

import copy
import math
import pickle
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import polyak_update

from rate_sb3 import RATE, PrevRewardWrapper
from rate_sb3.buffers import hindsight_returns
from rate_sb3.collect import collect_episodes
from rate_sb3.encoders import CategoricalHead, SquashedGaussianHead
from rate_sb3.envs import make_expert
from rate_sb3.extractors import CategoricalImageCNN
from rate_sb3.observations import map_observations, stack_observations
from rate_sb3.policies import RATEPolicy
from rate_sb3.wrappers import reward_observation_space

SMALL = dict(context_len=4, n_segments=2, d_model=16, n_layers=2, n_heads=2, n_mem_tokens=2, batch_size=8)
TINY = dict(segment_len=3, d_model=16, n_layers=2, n_heads=2, n_mem_tokens=2)  # RATEPolicy's own arguments


def tmaze_episode(corridor_length: int, goal: int):
    env = gym.make("TMaze-v0", corridor_length=corridor_length)
    expert = make_expert("TMaze-v0")
    observations, actions, rewards = [env.reset(options={"goal": goal})[0]], [], []
    expert.reset(env)
    done = False
    while not done:
        action = expert.act(env)
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        done = terminated or truncated
    return np.array(observations), np.array(actions), np.array(rewards, dtype=np.float32)


def recorded_step_hidden(policy: RATEPolicy, observations, model_actions: th.Tensor, rewards) -> th.Tensor:
    """Step through predict feeding the given model actions, recording the hidden state at each step."""
    recorded = []
    forced = iter(model_actions)

    def act(hidden, deterministic):
        recorded.append(hidden.clone())
        return next(forced)[None]

    policy.action_head.act = act
    state, start, prev_reward = None, np.array([True]), 0.0
    for t in range(len(model_actions)):
        step = map_observations(observations, lambda values: values[t][None])  # noqa: B023
        obs = {**model_observation(step), "prev_reward": np.array([[prev_reward]], dtype=np.float32)}
        _, state = policy.predict(obs, state, start)
        start, prev_reward = np.array([False]), rewards[t]
    return th.cat(recorded)


def model_observation(observation) -> dict:
    """An env observation as RATE's observation lacking only the previous reward."""
    return observation if isinstance(observation, dict) else {"observation": observation}


def record_hidden(policy: RATEPolicy) -> list[th.Tensor]:
    """Make ``predict`` also record the hidden states its action head acts on."""
    act, recorded = policy.action_head.act, []

    def recording_act(hidden: th.Tensor, deterministic: bool) -> th.Tensor:
        recorded.append(hidden.clone())
        return act(hidden, deterministic)

    policy.action_head.act = recording_act
    return recorded


def random_observations(n_steps: int, rng: np.random.Generator, width: int = 4) -> list[dict[str, np.ndarray]]:
    """One env's observations (T-Maze-shaped: ``width`` values in {-1, 0, 1}) with the previous reward."""
    no_reward = np.zeros((1, 1), np.float32)
    return [
        {"observation": rng.integers(-1, 2, size=(1, width)).astype(np.float32), "prev_reward": no_reward}
        for _ in range(n_steps)
    ]


def episode_hidden(policy: RATEPolicy, observations: list[dict[str, np.ndarray]]) -> tuple[th.Tensor, np.ndarray]:
    """The hidden states the action head acts on and the deterministic actions of one episode from its start."""
    recorded, state, actions = record_hidden(policy), None, []
    for t, observation in enumerate(observations):
        action, state = policy.predict(observation, state, np.array([t == 0]), deterministic=True)
        actions.append(action)
    del policy.action_head.act
    return th.cat(recorded), np.concatenate(actions)


def training_hidden(policy: RATEPolicy, observations, model_actions: th.Tensor, rewards) -> th.Tensor:
    """The training forward's outputs at the observation tokens of one episode, padded to whole segments."""
    n_steps = len(model_actions)
    pad = -n_steps % policy.config.segment_len
    pad_to = lambda x: th.cat([x, x.new_zeros(pad, *x.shape[1:])])  # noqa: E731
    return policy.window_hidden(
        map_observations(observations, lambda values: pad_to(th.as_tensor(values[:n_steps]))[None]),
        pad_to(model_actions)[None],
        pad_to(th.as_tensor(hindsight_returns(rewards) * policy.return_scale))[None],
        th.as_tensor(np.arange(n_steps + pad) < n_steps)[None],
    )[0, :n_steps]


@pytest.mark.parametrize("mode, mem_len", [("rate", 0), ("rate", 6), ("trxl", 12), ("dt", 0)])
def test_stateful_predict_equals_the_training_forward(mode, mem_len):
    model = RATE("RATEPolicy", "TMaze-v0", mode=mode, mem_len=mem_len, dropout=0.2, seed=0, **SMALL)
    policy = model.policy.eval()
    observations, actions, rewards = tmaze_episode(corridor_length=13, goal=-1)  # 14 steps: 4 segments
    policy.target_return = float(rewards.sum())
    with th.no_grad():
        steps = recorded_step_hidden(policy, observations, th.as_tensor(actions), rewards)
        hidden = training_hidden(policy, observations, th.as_tensor(actions), rewards)
    th.testing.assert_close(steps, hidden, atol=1e-4, rtol=1e-4)


GRID = spaces.Box(0, 2, (3, 7, 7), np.uint8)  # channels of category indices, as MiniGrid's


@pytest.mark.parametrize(
    "observation_space, action_space, policy_kwargs",
    [
        (spaces.Box(-1, 1, (2, 3)), spaces.Box(-2, 2, (2,)), {}),
        (spaces.Discrete(5), spaces.Discrete(3, start=1), {}),
        (spaces.MultiBinary(6), spaces.Box(-1, 1, (1,)), {}),
        (spaces.MultiDiscrete([3, 4]), spaces.Discrete(2), {}),
        (spaces.Box(0, 255, (3, 7, 7), np.uint8), spaces.Discrete(4), {}),
        (
            spaces.Dict({"image": spaces.Box(0, 255, (3, 7, 7), np.uint8), "direction": spaces.Discrete(4)}),
            spaces.Discrete(3),
            {},
        ),
        (
            GRID,
            spaces.Discrete(3),
            dict(features_extractor_class=CategoricalImageCNN, features_extractor_kwargs={"n_categories": (3, 3, 3)}),
        ),
        (
            spaces.Dict({"image": GRID, "direction": spaces.Discrete(4)}),
            spaces.Discrete(3),
            dict(features_extractor_kwargs={"categorical_images": {"image": (3, 3, 3)}}),
        ),
    ],
)
def test_predict_equals_the_training_forward_in_every_space(observation_space, action_space, policy_kwargs):
    # predict builds a step's tokens its own way (one product over host features, or beside a CNN)
    if "features_extractor_kwargs" in policy_kwargs:
        policy_kwargs = dict(policy_kwargs, normalize_images=False)
    space = reward_observation_space(observation_space)
    policy = RATEPolicy(space, action_space, lambda _: 1e-3, **TINY, **policy_kwargs).eval()
    observation_space.seed(0), action_space.seed(0)
    observations = stack_observations([observation_space.sample() for _ in range(8)])
    env_actions = th.as_tensor(np.stack([action_space.sample() for _ in range(7)]))
    model_actions = policy.actions_to_model(env_actions.reshape(1, 7, -1))[0]
    rewards = np.random.default_rng(0).normal(size=7).astype(np.float32)
    policy.target_return = float(rewards.sum())

    def assert_predict_equals_the_training_forward():
        steps = recorded_step_hidden(policy, observations, model_actions, rewards)
        hidden = training_hidden(policy, observations, model_actions, rewards)
        th.testing.assert_close(steps, hidden, atol=1e-4, rtol=1e-4)

    with th.no_grad():
        # again after an in-place update of each parameter alone: predict's cached folds must all see it
        for param in [None, *policy.parameters()]:
            if param is not None:
                param.add_(0.1 * th.randn_like(param))
            assert_predict_equals_the_training_forward()
        # and after every parameter is replaced by another tensor
        replaced = {name: param + 0.1 * th.randn_like(param) for name, param in policy.named_parameters()}
        policy.load_state_dict(replaced, strict=False, assign=True)
        assert_predict_equals_the_training_forward()


def test_standardised_observations_in_predict_equal_the_training_forward_as_the_statistics_change():
    # predict folds the mean and standard deviation into its one product: it must follow every change of them
    observation_space, action_space = spaces.Box(-5, 5, (2, 3)), spaces.Box(-1, 1, (2,))
    policy = RATEPolicy(
        reward_observation_space(observation_space), action_space, lambda _: 1e-3, standardize_observations=True, **TINY
    ).eval()
    observation_space.seed(0), action_space.seed(0)
    observations = stack_observations([observation_space.sample() for _ in range(8)])
    model_actions = th.as_tensor(np.stack([action_space.sample() for _ in range(7)]))
    rewards = np.random.default_rng(0).normal(size=7).astype(np.float32)
    policy.target_return = float(rewards.sum())
    rng = np.random.default_rng(1)
    previous = None
    with th.no_grad():
        for change in ("set", "set again", "load_state_dict"):
            mean, std = rng.normal(size=(2, 3)), rng.uniform(0.1, 3.0, size=(2, 3))
            if change == "load_state_dict":
                state = policy.state_dict()
                state.update({"observation_encoder.observation_mean": th.as_tensor(mean, dtype=th.float32)})
                policy.load_state_dict(state)
            else:
                policy.set_observation_statistics(mean, std)
            steps = recorded_step_hidden(policy, observations, model_actions, rewards)
            th.testing.assert_close(steps, training_hidden(policy, observations, model_actions, rewards))
            assert previous is None or not th.allclose(steps, previous)
            previous = steps
    assert policy.observation_statistics_set


@pytest.mark.parametrize("observation_space", [spaces.Box(0, 255, (3, 8, 8), np.uint8), spaces.Discrete(4)])
def test_standardising_observations_other_than_vectors_is_refused(observation_space):
    lr = lambda _: 1e-3  # noqa: E731
    with pytest.raises(ValueError, match="standardize_observations needs vector Box observations"):
        RATEPolicy(reward_observation_space(observation_space), spaces.Discrete(2), lr, standardize_observations=True)
    unstandardised = RATEPolicy(reward_observation_space(spaces.Box(0, 1, (2,))), spaces.Discrete(2), lr)
    with pytest.raises(ValueError, match="built without standardize_observations=True"):
        unstandardised.set_observation_statistics(np.zeros(2), np.ones(2))


def test_categorical_head_acts_with_its_current_weight():
    # every way of updating the weight must reach act, in each dtype of the hidden states
    head = CategoricalHead(8, 5)
    hidden = th.randn(64, 8)
    with th.no_grad():
        for like in (hidden, hidden.double()):
            for update in [
                None,
                lambda: head.linear.weight.copy_(th.randn(5, 8)),
                lambda: head.load_state_dict({"linear.weight": th.randn(5, 8)}, assign=True),
                lambda: head.linear.weight.data.mul_(-1),  # moves no version counter
                lambda: setattr(head.linear.weight, "data", th.randn(5, 8)),
            ]:
                if update is not None:
                    update()
                th.testing.assert_close(head.act(like, deterministic=True), head.linear(hidden).argmax(-1))


def test_sampled_actions_follow_the_heads_distributions():
    # 20,000 draws per row: each frequency within 0.015 of its probability, moments within 0.03 of the Normal's
    th.manual_seed(0)
    hidden = th.randn(3, 8)
    with th.no_grad():
        categorical = CategoricalHead(8, 4)
        draws = categorical.act(hidden.repeat(20_000, 1), deterministic=False).view(20_000, 3)
        frequencies = th.stack([(draws == a).double().mean(0) for a in range(4)], -1)
        th.testing.assert_close(frequencies, categorical.linear(hidden).softmax(-1).double(), atol=0.015, rtol=0)

        gaussian = SquashedGaussianHead(8, 2)
        actions = gaussian.act(hidden.repeat(20_000, 1), deterministic=False).view(20_000, 3, 2)
        normal = gaussian._normal(hidden)
        for k in (-1.0, 0.0, 1.0):  # the share of actions at or below tanh(mean + k std) is the Normal's CDF at k
            below = (actions <= th.tanh(normal.mean + k * normal.stddev)).double().mean(0)
            th.testing.assert_close(
                below, th.full_like(below, 0.5 * (1 + math.erf(k / math.sqrt(2)))), atol=0.015, rtol=0
            )


def _perturbed(policy: RATEPolicy) -> dict[str, th.Tensor]:
    return {name: value + 0.1 * th.randn_like(value) for name, value in policy.state_dict().items()}


def _optimizer_step(model: RATE) -> None:
    policy = model.policy
    loss = sum(param.square().sum() for param in policy.parameters())
    policy.optimizer.zero_grad()
    loss.backward()
    policy.optimizer.step()


def _polyak_update_from_another_policy(model: RATE) -> None:
    other = copy.deepcopy(model.policy)
    with th.no_grad():
        for param in other.parameters():
            param.add_(th.randn_like(param))
    polyak_update(other.parameters(), model.policy.parameters(), tau=0.5)  # in place on .data


def _assign_data(model: RATE) -> None:
    for param in model.policy.parameters():
        param.data = param.data * 1.5


def _to_float64_and_back(model: RATE) -> None:
    model.policy.to(th.float64)
    episode_hidden(model.policy, random_observations(4, np.random.default_rng(1), _observation_width(model)))
    model.policy.to(th.float32)


def _observation_width(model: RATE) -> int:
    return model.policy.inner_observation_space.shape[0]


WEIGHT_UPDATES = {  # name: (update, whether it changes the weights)
    "optimizer step": (_optimizer_step, True),
    "load_state_dict": (lambda model: model.policy.load_state_dict(_perturbed(model.policy)), True),
    "RATE.set_parameters": (lambda model: model.set_parameters({"policy": _perturbed(model.policy)}, False), True),
    "load_from_vector": (lambda model: model.policy.load_from_vector(model.policy.parameters_to_vector() * 1.5), True),
    "polyak_update": (_polyak_update_from_another_policy, True),
    "p.data.mul_": (lambda model: [param.data.mul_(1.5) for param in model.policy.parameters()], True),
    "p.data = tensor": (_assign_data, True),
    "to float64 and back": (_to_float64_and_back, False),
    "train and eval": (lambda model: model.policy.train().eval(), False),
}


@pytest.mark.parametrize("env_id", ["TMaze-v0", "Pendulum-v1"])  # Discrete and Box actions, vector observations
@pytest.mark.parametrize("update", WEIGHT_UPDATES)
def test_predict_after_a_weight_update_equals_a_fresh_policy_with_those_weights(env_id, update):
    # predict keeps weights derived from the parameters between calls: no way of changing them may leave it stale
    model = RATE("RATEPolicy", env_id, seed=0, **SMALL)
    observations = random_observations(9, np.random.default_rng(0), _observation_width(model))
    before, _ = episode_hidden(model.policy, observations)  # builds every derived weight
    change, changes_weights = WEIGHT_UPDATES[update]
    th.manual_seed(1)
    change(model)
    fresh = RATEPolicy(**model.policy._get_constructor_parameters(), lr_schedule=lambda _: 0.0)
    fresh.load_state_dict(model.policy.state_dict())
    after, actions = episode_hidden(model.policy, observations)
    expected, expected_actions = episode_hidden(fresh, observations)
    th.testing.assert_close(after, expected, rtol=0, atol=0)
    np.testing.assert_array_equal(actions, expected_actions)
    assert changes_weights != th.equal(after, before)


def test_an_env_restarted_apart_follows_a_change_of_any_one_transformer_parameter():
    # such an env copies its first read tokens' keys and values, cached from the weights they depend on
    model = RATE("RATEPolicy", "TMaze-v0", seed=0, **SMALL)
    policy, observation = model.policy, random_observations(1, np.random.default_rng(0))[0]
    both = {key: np.repeat(value, 2, axis=0) for key, value in observation.items()}
    for name, parameter in policy.transformer.named_parameters():
        _, state = policy.predict(both, None, deterministic=True)
        policy.predict(both, state, np.array([False, True]), deterministic=True)  # the copy is made and kept
        parameter.data.add_(0.5 * th.randn_like(parameter))
        recorded = record_hidden(policy)
        policy.predict(both, state, np.array([False, True]), deterministic=True)
        policy.predict(observation, None, deterministic=True)  # one env begins with its read tokens: no copy
        alone = recorded.pop()
        th.testing.assert_close(recorded.pop()[1:], alone, atol=1e-6, rtol=1e-6, msg=f"after a change of {name}")
        del policy.action_head.act


@pytest.mark.parametrize("mem_len", [0, 6])  # a hidden-state cache keeps each token's layer inputs too
def test_batched_predict_with_different_segment_phases_equals_single_env_predict(mem_len):
    model = RATE("RATEPolicy", "TMaze-v0", mem_len=mem_len, seed=0, **SMALL)
    recorded = record_hidden(model.policy)
    env = make_vec_env("TMaze-v0", n_envs=3, wrapper_class=PrevRewardWrapper, env_kwargs=dict(corridor_length=7))
    obs = env.reset()
    rng = np.random.default_rng(0)
    state, starts = None, np.ones(3, bool)
    singles = [None, None, None]
    for step in range(25):
        starts = starts | (rng.random(3) < 0.1)  # restart envs at random moments: phases drift apart
        if step == 12:  # envs restarted apart copy their first read tokens, which must follow new weights
            for param in model.policy.transformer.parameters():
                param.data.mul_(0.9)
        actions, state = model.predict(obs, state, starts, deterministic=True)
        batched = recorded.pop()
        for i in range(3):
            single_obs = {key: value[i : i + 1] for key, value in obs.items()}
            single_action, singles[i] = model.predict(single_obs, singles[i], starts[i : i + 1], deterministic=True)
            th.testing.assert_close(batched[i : i + 1], recorded.pop(), atol=1e-5, rtol=1e-5)
            assert single_action[0] == actions[i]
        obs, _, starts, _ = env.step(actions)


def test_predict_from_two_threads_at_once_equals_predict_from_one():
    model = RATE("RATEPolicy", "TMaze-v0", seed=0, **SMALL)
    act, recorded = model.policy.action_head.act, defaultdict(list)

    def recording_act(hidden, deterministic):
        recorded[threading.get_ident()].append(hidden.clone())
        return act(hidden, deterministic)

    model.policy.action_head.act = recording_act
    rng = np.random.default_rng(0)
    streams = [random_observations(300, rng) for _ in range(2)]

    def run(observations: list[dict[str, np.ndarray]]) -> th.Tensor:
        state = None
        for t, observation in enumerate(observations):
            _, state = model.predict(observation, state, np.array([t == 0]), deterministic=True)
        return th.cat(recorded.pop(threading.get_ident()))

    alone = [run(stream) for stream in streams]
    # the worst interleaving: both threads have written their step's features when either reads them
    encoder, both_written = model.policy.step_encoder, threading.Barrier(2, timeout=10)
    fold = encoder._folded

    def fold_when_both_have_written(like: th.Tensor):
        both_written.wait()
        return fold(like)

    encoder._folded = fold_when_both_have_written
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(run, streams))
    for hidden_alone, hidden_together in zip(alone, together):
        th.testing.assert_close(hidden_together, hidden_alone)


@pytest.mark.parametrize("duplicate", [copy.deepcopy, lambda policy: pickle.loads(pickle.dumps(policy))])
def test_a_copy_of_a_policy_in_use_predicts_as_the_original(duplicate):
    policy = RATE("RATEPolicy", "TMaze-v0", seed=0, **SMALL).policy
    observations = random_observations(20, np.random.default_rng(0))
    _, state = policy.predict(observations[0], None, np.array([True]), deterministic=True)
    twin, twin_state = duplicate(policy), state.repeat(1)
    recorded, twin_recorded = record_hidden(policy), record_hidden(twin)
    for observation in observations[1:]:
        _, state = policy.predict(observation, state, np.array([False]), deterministic=True)
        _, twin_state = twin.predict(observation, twin_state, np.array([False]), deterministic=True)
    th.testing.assert_close(th.cat(twin_recorded), th.cat(recorded))


def test_predict_in_float64_equals_predict_in_float32():
    policy = RATE("RATEPolicy", "TMaze-v0", seed=0, **SMALL).policy
    observations = random_observations(12, np.random.default_rng(0))

    single, _ = episode_hidden(policy, observations)
    policy.double()
    double, _ = episode_hidden(policy, observations)
    assert double.dtype == th.float64
    th.testing.assert_close(double, single.double(), atol=1e-5, rtol=1e-5)


def test_predict_copies_episode_start_and_handles_unbatched_observations():
    model = RATE("RATEPolicy", "TMaze-v0", seed=0, **SMALL)
    env = PrevRewardWrapper(gym.make("TMaze-v0", corridor_length=5))
    obs, _ = env.reset(seed=0)
    starts = np.array([True])
    action, state = model.predict(obs, None, starts, deterministic=True)
    assert np.ndim(action) == 0 and starts[0]
    starts[0] = False
    action, state = model.predict(obs, state, starts, deterministic=True)
    assert state.step[0] == 2


@pytest.mark.parametrize("reset", [False, True])
def test_return_to_go_resets_to_the_target_at_each_segment_when_asked(reset):
    space = reward_observation_space(spaces.Box(-1, 1, (4,)))
    policy = RATEPolicy(space, spaces.Discrete(3), lambda _: 1e-3, target_return=10.0, **TINY)
    policy.reset_return_to_go_per_segment = reset
    observations = random_observations(8, np.random.default_rng(0))
    conditioned, state = [], None
    for t, observation in enumerate(observations):
        observation["prev_reward"][:] = 0.0 if t == 0 else 1.0
        _, state = policy.predict(observation, state, np.array([t == 0]))
        conditioned.append(float(state.return_to_go[0]))
    # segments of 3 steps: the paper's MuJoCo evaluation asks for the target again at steps 3 and 6
    expected = [10, 9, 8, 10, 9, 8, 10, 9] if reset else [10, 9, 8, 7, 6, 5, 4, 3]
    assert conditioned == expected


def test_box_actions_are_rescaled_to_the_action_bounds():
    env = gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), -2.0, 2.0)
    model = RATE("RATEPolicy", env, target_return=0.0, seed=0, **SMALL)
    vec = model.get_env()
    obs = vec.reset()
    actions, _ = model.predict(obs, None, np.ones(1, bool))
    assert actions.shape == (1, 1) and np.all(np.abs(actions) <= 2.0)


def test_predict_without_reward_feedback_says_how_to_wrap():
    model = RATE("RATEPolicy", "TMaze-v0", seed=0, **SMALL)
    raw_obs, _ = gym.make("TMaze-v0").reset(seed=0)
    with pytest.raises(ValueError, match="PrevRewardWrapper"):
        model.predict(raw_obs)


def test_state_of_another_batch_size_is_rejected():
    model = RATE("RATEPolicy", "TMaze-v0", seed=0, **SMALL)
    obs = {"observation": np.zeros((2, 4), np.float32), "prev_reward": np.zeros((2, 1), np.float32)}
    _, state = model.predict(obs)
    three = {key: np.concatenate([value, value[:1]]) for key, value in obs.items()}
    with pytest.raises(ValueError, match="state holds 2 envs but the observation has 3"):
        model.predict(three, state, np.zeros(3, bool))


@pytest.mark.parametrize(
    "observation_space, action_space, message",
    [
        (
            spaces.Dict({"a": spaces.Dict({"b": spaces.Box(0, 1, (2,))})}),
            spaces.Discrete(2),
            "cannot encode the key 'a'",
        ),
        (spaces.Tuple([spaces.Box(0, 1, (2,))]), spaces.Discrete(2), "FlattenObservation"),
        (spaces.Box(0, 1, (2,)), spaces.MultiDiscrete([2, 2]), "action space"),
        (spaces.Box(0, 1, (2,)), spaces.Box(-np.inf, np.inf, (1,)), "bounded Box"),
        (spaces.Box(0, 255, (8, 8, 3), np.uint8), spaces.Discrete(2), "channel-first"),
    ],
)
def test_unsupported_spaces_are_rejected_with_the_fix(observation_space, action_space, message):
    with pytest.raises(ValueError, match=message):
        RATEPolicy(reward_observation_space(observation_space), action_space, lambda _: 1e-3)


def test_policy_needs_reward_feedback_in_its_observation_space():
    with pytest.raises(ValueError, match="PrevRewardWrapper"):
        RATEPolicy(spaces.Box(0, 1, (2,)), spaces.Discrete(2), lambda _: 1e-3)


def test_image_and_discrete_observations_are_encoded():
    for space in (
        spaces.Box(0, 255, (3, 40, 40), np.uint8),
        spaces.Box(0, 255, (3, 7, 7), np.uint8),
        spaces.Discrete(5),
    ):
        policy = RATEPolicy(reward_observation_space(space), spaces.Discrete(3), lambda _: 1e-3, **{"segment_len": 2})
        obs = {"observation": np.stack([space.sample() for _ in range(2)]), "prev_reward": np.zeros((2, 1))}
        actions, _ = policy.predict(obs, None, np.ones(2, bool))
        assert actions.shape == (2,)


def test_channel_last_images_are_transposed_to_the_policy_space():
    # rl_zoo3 enjoy steps envs without VecTransposeImage: their images come channel-last
    space = spaces.Box(0, 255, (3, 7, 7), np.uint8)
    policy = RATEPolicy(reward_observation_space(space), spaces.Discrete(3), lambda _: 1e-3, segment_len=2)
    images, prev_reward, starts = np.stack([space.sample() for _ in range(2)]), np.zeros((2, 1)), np.ones(2, bool)
    expected, _ = policy.predict({"observation": images, "prev_reward": prev_reward}, None, starts, True)
    channel_last = {"observation": images.transpose(0, 2, 3, 1), "prev_reward": prev_reward}
    np.testing.assert_array_equal(policy.predict(channel_last, None, starts, True)[0], expected)
    single = {"observation": images[1].transpose(1, 2, 0), "prev_reward": np.zeros(1)}
    assert policy.predict(single, None, starts[:1], True)[0] == expected[1]


def test_collected_expert_demonstrations_validate_against_the_policy_spaces():
    episodes = collect_episodes(make_expert("TMaze-v0"), lambda: gym.make("TMaze-v0", corridor_length=3), 4)
    model = RATE("RATEPolicy", "TMaze-v0", demonstrations=episodes, seed=0, **SMALL)
    assert len(model.demonstration_episodes()) == 4


def test_the_speed_benchmarks_recomputed_window_acts_as_predict(load_benchmark):
    # inference_speed.py times predict against rebuilding each window through the training path's layers, written
    # into the slots incremental inference gives the tokens: a baseline that must compute the same thing
    speed = load_benchmark("inference_speed")
    policy = RATE("RATEPolicy", "TMaze-v0", seed=0, **SMALL).policy
    assert speed.check_same_logits(policy, corridor_length=9)["episode_steps"] == 11  # three segments of 4 steps
