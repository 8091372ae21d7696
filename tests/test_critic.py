"""The history critic and advantage-weighted training: what the critic sees, the weights, learning, save/load."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from rate_sb3 import RATE
from rate_sb3.collect import collect_episodes
from rate_sb3.critic import AdvantageWeighting
from rate_sb3.envs import make_expert
from rate_sb3.envs.tmaze import junction_steps
from rate_sb3.objective import window_loss

TINY = dict(context_len=4, n_segments=3, d_model=32, n_layers=1, n_heads=2, n_mem_tokens=2, batch_size=32)


@pytest.fixture(scope="module")
def clue_blind_demos():
    """Episodes of an expert that always turns up: return 1 exactly when the clue says up."""
    env_fn = lambda: gym.make("TMaze-v0", corridor_length=list(range(1, 11)))  # noqa: E731
    expert = make_expert("TMaze-v0", ignore_clue=True, fixed_turn=1)
    return collect_episodes(expert, env_fn, 200, n_envs=4, seed=0)


def make_model(demos, **kwargs) -> RATE:
    return RATE("RATEPolicy", "TMaze-v0", demonstrations=demos, seed=0, advantage_temperature=0.1, **TINY, **kwargs)


def full_windows(model: RATE, n: int = 32):
    """A batch of whole episodes from their first step (no burn-in)."""
    model._prepare_buffer().start_at_zero = 1.0
    return model.replay_buffer.sample(n, 3, model.device)


def values(model: RATE, batch) -> th.Tensor:
    policy = model.policy
    policy.set_training_mode(False)
    with th.no_grad():
        return policy.critic(batch.observations, policy.actions_to_model(batch.actions), batch.valid)


def test_the_critic_reads_the_history_and_never_the_return(clue_blind_demos):
    model = make_model(clue_blind_demos)
    batch = full_windows(model)
    before = values(model, batch)
    batch.returns_to_go.add_(3.0)
    assert th.equal(values(model, batch), before)
    batch.observations[:, 0, 1] *= -1  # flip the clue at t = 0: later values, in later segments too, change
    changed = (values(model, batch) - before).abs()
    assert (changed[:, 0] > 0).all() and (changed[:, 8:][batch.valid[:, 8:]] > 0).all()


def test_the_likelihood_is_weighted_by_the_capped_advantage_with_mean_one(clue_blind_demos):
    model = make_model(clue_blind_demos)
    batch = full_windows(model)
    policy, weighting = model.policy, AdvantageWeighting(temperature=0.5, max_weight=3.0, value_coef=2.0)
    critic_values = values(model, batch)
    with th.no_grad():
        plain = window_loss(policy, batch)
        weighted = window_loss(policy, batch, advantage=weighting)
        model_actions = policy.actions_to_model(batch.actions)
        hidden = policy.window_hidden(batch.observations, model_actions, batch.returns_to_go, batch.valid)
        log_prob = policy.action_head.log_prob(hidden, model_actions)
    valid = batch.valid
    advantage = batch.returns_to_go - critic_values
    weights = th.minimum(th.exp(advantage / 0.5), th.tensor(3.0))[valid]
    weights = weights / weights.mean()
    assert weighted.nll.item() == pytest.approx(-(weights * log_prob[valid]).mean().item(), rel=1e-5)
    assert plain.nll.item() == pytest.approx(-log_prob[valid].mean().item(), rel=1e-5)
    value_loss = ((critic_values - batch.returns_to_go)[valid] ** 2).mean()
    assert weighted.value_loss.item() == pytest.approx(value_loss.item(), rel=1e-5)
    assert weighted.loss.item() == pytest.approx(weighted.nll.item() + 2.0 * value_loss.item(), rel=1e-5)
    assert weighted.max_weight == pytest.approx(weights.max().item(), rel=1e-5)
    assert plain.value_loss is None


def test_discounted_value_targets_are_what_the_critic_learns_and_compares(clue_blind_demos):
    from rate_sb3.buffers import hindsight_returns

    rewards = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    by_hand = [1.0 - 0.9 * 2.0 + 0.81 * 0.5 + 0.729 * 3.0, -2.0 + 0.9 * 0.5 + 0.81 * 3.0, 0.5 + 0.9 * 3.0, 3.0]
    np.testing.assert_allclose(hindsight_returns(rewards, 0.9), by_hand, rtol=1e-6)
    np.testing.assert_allclose(hindsight_returns(rewards), [2.5, 1.5, 3.5, 3.0], rtol=1e-6)

    model = make_model(clue_blind_demos, advantage_gamma=0.5)
    undiscounted = full_windows(model)
    assert th.equal(undiscounted.value_targets, undiscounted.returns_to_go)
    model.replay_buffer.rng = np.random.default_rng(0)
    batch = model.replay_buffer.sample(32, 3, model.device, value_gamma=0.5)
    valid, lengths = batch.valid, batch.valid.sum(1)
    # T-Maze pays only at the last step: the target is 0.5 ** (steps left) times the final reward
    final_reward = batch.returns_to_go[:, :1]
    steps_left = lengths[:, None] - 1 - th.arange(valid.shape[1])
    assert th.allclose(batch.value_targets[valid], (final_reward * 0.5**steps_left)[valid])
    critic_values = values(model, batch)
    with th.no_grad():
        terms = window_loss(model.policy, batch, advantage=model._advantage_weighting())
    expected = ((critic_values - batch.value_targets)[valid] ** 2).mean()
    assert terms.value_loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_critic_learns_that_the_remembered_clue_decides_the_return(clue_blind_demos, tmp_path):
    """At the junction the clue is many steps back (often segments back): only memory can tell the two apart."""
    model = make_model(clue_blind_demos, learning_rate=2e-3, warmup_steps=20, lr_end_factor=1.0)
    model.pretrain(400, log_interval=400)
    batch = full_windows(model, 128)
    at_junction = junction_steps(batch.observations) & batch.valid
    junction_values = values(model, batch)[at_junction]
    clue_up = batch.observations[:, 0, 1][at_junction.any(dim=1)] > 0
    assert junction_values[clue_up].min() > 0.75 and junction_values[~clue_up].max() < 0.25
    model.save(tmp_path / "critic.zip")
    loaded = RATE.load(tmp_path / "critic.zip")
    assert th.equal(values(loaded, batch), values(model, batch))


def test_advantage_weighting_logs_the_critic_and_rejects_bad_settings(clue_blind_demos, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    make_model(clue_blind_demos, tensorboard_log=str(tmp_path)).pretrain(2, log_interval=1)
    tags = EventAccumulator(str(next(tmp_path.iterdir()))).Reload().Tags()["scalars"]
    assert {"pretrain/value_loss", "pretrain/max_advantage_weight"} <= set(tags)
    for kwargs, message in [
        (dict(advantage_temperature=0.0), "advantage_temperature=0.0 must be > 0"),
        (dict(advantage_temperature=0.1, max_advantage_weight=0.5), "max_advantage_weight=0.5 must be"),
        (dict(advantage_temperature=0.1, max_advantage_weight=np.inf), "max_advantage_weight=inf must be"),
        (dict(advantage_temperature=0.1, vf_coef=-1.0), "vf_coef=-1.0 must be >= 0"),
        (dict(advantage_temperature=0.1, advantage_gamma=0.0), r"advantage_gamma=0.0 must be in \(0, 1\]"),
        (dict(advantage_temperature=0.1, advantage_gamma=1.5), r"advantage_gamma=1.5 must be in \(0, 1\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            RATE("RATEPolicy", "TMaze-v0", **TINY, **kwargs)
    no_critic = RATE("RATEPolicy", "TMaze-v0", demonstrations=clue_blind_demos, **TINY)
    with pytest.raises(ValueError, match="advantage weighting needs a policy built with critic=True"):
        window_loss(no_critic.policy, full_windows(no_critic), advantage=AdvantageWeighting())
