"""Training windows from anywhere in an episode, with memory burn-in."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from rate_sb3 import RATE
from rate_sb3.buffers import TrajectoryBuffer
from rate_sb3.data import Episode
from rate_sb3.model import RATEConfig, RATETransformer
from rate_sb3.objective import window_loss

TINY = dict(context_len=4, n_segments=3, d_model=16, n_layers=1, n_heads=2, n_mem_tokens=2, batch_size=8)


def counting_episode(length: int, start: int = 0) -> Episode:
    """An episode whose observation at step t is ``start + t``, so a batch shows which steps it copied."""
    observations = np.arange(start, start + length + 1, dtype=np.float32)[:, None]
    return Episode(observations, np.zeros(length, np.int64), np.ones(length, np.float32), True, False)


def rows(batch, segment_len: int):
    """Per row: the episode steps of its burn-in and of its trained window, and the valid masks of both."""
    skip = batch.burn_in_segments * segment_len
    steps, valid = batch.observations[..., 0].long(), batch.valid
    for row in range(len(valid)):
        yield steps[row, :skip], valid[row, :skip], steps[row, skip:], valid[row, skip:]


@pytest.mark.parametrize("burn_in", [0, 2])
def test_sampled_windows_cover_every_step_of_a_long_episode(burn_in):
    """Windows start at any segment: a 1,000-step episode is trained on to its last step, and a batch copies only
    the windows and their burn-in, never the whole episode."""
    k, n_segments = 20, 3
    buffer = TrajectoryBuffer(segment_len=k, seed=0)
    buffer.add_demonstrations([counting_episode(1000)])
    trained = np.zeros(1000, bool)
    for _ in range(40):
        batch = buffer.sample(32, n_segments, burn_in_segments=burn_in)
        assert batch.observations.shape[1] <= (burn_in + n_segments) * k
        for _, _, window, valid in rows(batch, k):
            trained[window[valid].numpy()] = True
    assert trained.all(), np.flatnonzero(~trained)[:10]


@pytest.mark.parametrize("burn_in", [0, 1, 2])
def test_windows_hold_consecutive_steps_with_left_padded_burn_in_and_right_padding_at_the_end(burn_in):
    k, n_segments, length = 4, 2, 18  # 5 segments, the last one holds 2 steps
    buffer = TrajectoryBuffer(segment_len=k, seed=1)
    buffer.add_demonstrations([counting_episode(length)])
    starts = set()
    for _ in range(20):
        batch = buffer.sample(16, n_segments, burn_in_segments=burn_in)
        assert batch.burn_in_segments <= burn_in
        for burn_steps, burn_valid, window, valid in rows(batch, k):
            start = int(window[0])
            assert start % k == 0 and valid[0]
            starts.add(start // k)
            n_valid = min(length, start + n_segments * k) - start
            assert valid.tolist() == [True] * n_valid + [False] * (len(valid) - n_valid)  # right padding at the end
            assert window[:n_valid].tolist() == list(range(start, start + n_valid))
            n_burn = min(start // k, batch.burn_in_segments) * k  # as many earlier segments as there are
            assert burn_valid.tolist() == [False] * (len(burn_valid) - n_burn) + [True] * n_burn  # left padding
            assert burn_steps[burn_valid].tolist() == list(range(start - n_burn, start))
    assert starts == {0, 1, 2, 3, 4}


def test_episodes_and_start_segments_are_drawn_uniformly_over_all_possible_windows():
    k = 10
    buffer = TrajectoryBuffer(segment_len=k, seed=0)
    buffer.add_demonstrations([counting_episode(10, start=0), counting_episode(95, start=1000)])
    counts: dict[int, int] = {}
    for _ in range(100):
        for _, _, window, _ in rows(buffer.sample(110, 1), k):
            counts[int(window[0])] = counts.get(int(window[0]), 0) + 1
    # 11 possible windows: the short episode's one, and one per segment of the long one (its last holds 5 steps)
    assert sorted(counts) == [0] + [1000 + k * s for s in range(10)]
    assert all(800 < count < 1200 for count in counts.values()), counts


def test_episodes_shorter_than_a_window_are_padded():
    buffer = TrajectoryBuffer(segment_len=4, seed=0)
    buffer.add_demonstrations([counting_episode(3)])
    batch = buffer.sample(4, 3, burn_in_segments=2)
    assert batch.burn_in_segments == 0 and batch.observations.shape[:2] == (4, 12)
    assert batch.valid.sum(1).tolist() == [3] * 4


def test_uint8_frames_stay_uint8_in_the_batch():
    frames = np.random.default_rng(0).integers(0, 256, size=(31, 1, 8, 8), dtype=np.uint8)
    episode = Episode(frames, np.zeros(30, np.int64), np.zeros(30, np.float32), True, False)
    buffer = TrajectoryBuffer(segment_len=5, seed=0)
    buffer.add_demonstrations([episode])
    batch = buffer.sample(4, 2, burn_in_segments=2)
    assert batch.observations.dtype == th.uint8 and batch.observations.shape[2:] == (1, 8, 8)


def test_a_negative_burn_in_is_rejected_by_the_buffer():
    buffer = TrajectoryBuffer(segment_len=4)
    buffer.add_demonstrations([counting_episode(10)])
    with pytest.raises(ValueError, match="burn_in_segments=-1"):
        buffer.sample(2, 1, burn_in_segments=-1)


# ------------------------------------------------------------------------------------------ the model's padding
@pytest.mark.parametrize("mode", ["rate", "trxl"])
def test_an_all_padding_segment_leaves_memory_and_cache_as_they_were(mode):
    """A row whose burn-in is shorter than the batch's is left-padded with a whole invalid segment: its outputs
    equal those of the same steps without the padding, and nothing is NaN."""
    th.manual_seed(0)
    config = RATEConfig(d_model=16, n_layers=2, n_heads=2, segment_len=3, n_mem_tokens=2, mem_len=12, mode=mode)
    model = RATETransformer(config).double().eval()
    steps = th.randn(2, 6, 3, 16, dtype=th.float64)
    valid = th.ones(2, 6, dtype=th.bool)
    padded = th.cat([th.zeros(2, 3, 3, 16, dtype=th.float64), steps], dim=1)
    padded_valid = th.cat([th.zeros(2, 3, dtype=th.bool), valid], dim=1)
    with th.no_grad():
        plain = model(steps.flatten(1, 2), valid.repeat_interleave(3, 1))
        with_padding = model(padded.flatten(1, 2), padded_valid.repeat_interleave(3, 1))
    assert not with_padding.hidden.isnan().any()
    th.testing.assert_close(with_padding.hidden[:, 9:], plain.hidden)
    if mode == "rate":
        th.testing.assert_close(with_padding.memory, plain.memory)
    assert th.equal(with_padding.cache_valid, plain.cache_valid)
    kept = plain.cache_valid
    th.testing.assert_close(with_padding.cache.transpose(1, 2)[kept], plain.cache.transpose(1, 2)[kept])


# ------------------------------------------------------------------------------------------------ the algorithm
def cartpole_demos():
    env = gym.make("CartPole-v1")
    episodes = []
    for seed in range(4):
        observation, _ = env.reset(seed=seed)
        observations, actions, rewards, done = [observation], [], [], False
        while not done and len(actions) < 40:
            action = int(observation[2] > 0)
            observation, reward, terminated, truncated, _ = env.step(action)
            observations.append(observation)
            actions.append(action)
            rewards.append(reward)
            done = terminated or truncated
        episodes.append(Episode(np.array(observations), np.array(actions), np.array(rewards), terminated, False))
    return episodes


def test_burn_in_frames_are_encoded_without_gradient():
    model = RATE("RATEPolicy", "CartPole-v1", demonstrations=cartpole_demos(), burn_in_segments=2, seed=0, **TINY)
    buffer = model._prepare_buffer()
    batch = buffer.sample(8, 2, burn_in_segments=2)
    while batch.burn_in_segments < 2:
        batch = buffer.sample(8, 2, burn_in_segments=2)
    encoded = []  # (steps, gradient enabled) of each call of the observation encoder
    hook = model.policy.observation_encoder.register_forward_hook(
        lambda module, inputs, output: encoded.append((len(inputs[0]), th.is_grad_enabled()))
    )
    batch.observations.requires_grad_(True)
    window_loss(model.policy, batch).loss.backward()
    hook.remove()
    batch_size, window = batch.valid.shape
    segment_steps = batch_size * TINY["context_len"]  # burn-in is encoded a segment at a time, to bound memory
    trained_steps = batch_size * window - 2 * segment_steps
    assert sorted(encoded) == sorted([(segment_steps, False), (segment_steps, False), (trained_steps, True)])
    gradient = batch.observations.grad.abs().sum(dim=(0, 2))
    assert (gradient[: 2 * TINY["context_len"]] == 0).all() and (gradient[2 * TINY["context_len"] :] > 0).any()


@pytest.mark.parametrize("burn_in", [-1, 1.5, True, "2"])
def test_rate_rejects_a_bad_burn_in(burn_in):
    with pytest.raises(ValueError, match="burn_in_segments"):
        RATE("RATEPolicy", "CartPole-v1", burn_in_segments=burn_in, target_return=1.0, **TINY)


def test_burn_in_is_saved_with_the_model_and_reaches_the_batches(tmp_path, monkeypatch):
    model = RATE("RATEPolicy", "CartPole-v1", demonstrations=cartpole_demos(), burn_in_segments=3, seed=0, **TINY)
    model.save(tmp_path / "model.zip")
    loaded = RATE.load(tmp_path / "model.zip", env=model.env)
    assert loaded.burn_in_segments == 3
    asked = []
    sample = TrajectoryBuffer.sample
    monkeypatch.setattr(TrajectoryBuffer, "sample", lambda *a, **kw: asked.append(a[5]) or sample(*a, **kw))
    loaded.demonstrations = model.demonstrations
    loaded.pretrain(2)
    assert asked == [3, 3]
