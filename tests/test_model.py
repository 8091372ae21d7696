"""The memory transformer: attention rules, incremental inference equivalence, gradient flow."""

import pytest
import torch as th

from rate_sb3.attention import AttentionPattern, SegmentPattern, attention_allowed, dropout
from rate_sb3.inference import IncrementalInference
from rate_sb3.model import RATEConfig, RATETransformer


def make_model(**overrides) -> RATETransformer:
    th.manual_seed(0)
    kwargs = dict(d_model=16, n_layers=2, n_heads=2, segment_len=3, n_mem_tokens=2, dropout=0.1, dropatt=0.1)
    kwargs.update(overrides)
    return RATETransformer(RATEConfig(**kwargs)).double().eval()


def test_mask_layout_matches_the_reference_rules():
    # m = 2, two env steps, a cache of 3: the layout verified against the reference (spec 1.4).
    m, n_seg = 2, 6
    key_idx = th.arange(-3, 2 * m + n_seg)
    query_idx = th.arange(2 * m + n_seg)[None]
    allowed = attention_allowed(query_idx, key_idx, m, n_seg)[0]
    rows = ["".join("0" if a else "1" for a in row.tolist()) for row in allowed]
    expected = [
        "111" + "00" + "111111" + "11",  # read
        "111" + "00" + "111111" + "11",
        "000" + "00" + "011111" + "11",  # R0
        "000" + "00" + "001111" + "11",  # o0
        "000" + "00" + "000111" + "11",  # a0
        "000" + "00" + "000011" + "11",  # R1
        "000" + "00" + "000001" + "11",  # o1
        "000" + "00" + "000000" + "11",  # a1
        "111" + "00" + "000000" + "00",  # write
        "111" + "00" + "000000" + "00",
    ]
    assert rows == expected


@pytest.mark.parametrize("block_size", [3, 64])
@pytest.mark.parametrize("n_mem, n_cache", [(2, 0), (2, 5), (0, 4)])
def test_segment_blocks_pick_the_position_scores_the_gather_picks(n_mem, n_cache, block_size, monkeypatch):
    # the training forward reads a segment's position scores by query blocks, through skewed views of a
    # descending table; inference gathers them from an ascending one: both must give every allowed pair its
    # distance's score, and a block may leave out only keys its queries do not see
    monkeypatch.setattr(SegmentPattern, "block_size", block_size)
    n_seg, heads, batch = 6, 2, 2
    n = 2 * n_mem + n_seg
    query_idx, key_idx = th.arange(n), th.arange(-n_cache, n)
    allowed = attention_allowed(query_idx, key_idx, n_mem, n_seg).expand(batch, -1, -1).clone()
    allowed[1, :, :2] = False  # invalid cache slots in one row
    lowest, highest = -n_mem, n - 1 + n_cache
    per_distance = th.randn(heads, batch, n, highest - lowest + 1, dtype=th.float64)  # scores ascending by distance
    gathered = AttentionPattern.of(query_idx, key_idx, allowed, lowest, highest).score_bias(per_distance.flatten(1, 2))
    gathered = gathered.view(heads, batch, n, -1)
    blocks = SegmentPattern.of(allowed, heads, th.float64).blocks
    assert len(blocks) == max(1, round(n / block_size))
    assert [block.rows.start for block in blocks[1:]] == [block.rows.stop for block in blocks[:-1]]
    for block in blocks:
        table = per_distance.flip(-1)[:, :, block.rows, block.table_start :].flatten(1, 2).contiguous()
        skewed = block.score_bias(table).view(heads, batch, -1, block.n_keys)
        assert th.equal(skewed, gathered[:, :, block.rows, : block.n_keys])
        assert th.isinf(gathered[:, :, block.rows, block.n_keys :]).all()


def incremental_outputs(
    model: RATETransformer,
    tokens: th.Tensor,
    inference: IncrementalInference | None = None,
    read_with_step: bool = False,
):
    """Feed tokens step by step as the policy does: [a_{t-1}, R_t, o_t] per step, memory written per segment
    (its read tokens run on their own, or with the segment's first step)."""
    cfg, inference = model.config, inference or IncrementalInference(model)
    batch, n_steps = tokens.shape[0], tokens.shape[1] // 3
    memory = model.init_memory(batch) if cfg.n_mem_tokens else None
    cache = tokens.new_zeros(batch, cfg.n_layers, cfg.mem_len, cfg.d_model)
    cache_valid = th.zeros(batch, cfg.mem_len, dtype=th.bool)
    outputs, store = [], None
    for t in range(n_steps):
        s = t % cfg.segment_len
        previous_action = tokens[:, 3 * t - 1 : 3 * t]
        if s == 0:
            if t > 0:
                memory, next_cache, next_valid = inference.end_segment(store, previous_action, memory, cache)
                if next_cache is not None:
                    cache, cache_valid = next_cache, next_valid
            store = inference.empty_store(batch, tokens, cache_valid)
            inference.begin_segment(store, memory, cache, read=not read_with_step)
            previous_action = th.full_like(tokens[:, :1], 7.0)  # a dummy: no query may see it
        read_memory = memory if read_with_step and s == 0 else None
        out = inference.step(store, th.cat([previous_action, tokens[:, 3 * t : 3 * t + 2]], dim=1), s, read_memory)
        outputs.append(out[:, 1:])
    return th.cat(outputs, dim=1)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(mode="rate"),
        dict(mode="rate", mem_len=7, d_inner=8),
        dict(mode="rmt"),
        dict(mode="trxl", mem_len=10),
        dict(mode="dt", segment_len=7),
        dict(mode="rate", double_residual=True, shared_mem_init=True, mrv_act="tanh"),
    ],
)
@pytest.mark.parametrize("batch", [1, 3])  # one env takes its own shortcuts through the kernel
@pytest.mark.parametrize("read_with_step", [False, True])
def test_step_by_step_inference_equals_training_forward(overrides, batch, read_with_step):
    model = make_model(**overrides)
    n_segments = 3
    n_steps = n_segments * model.config.segment_len
    tokens = th.randn(batch, 3 * n_steps, 16, dtype=th.float64)
    with th.no_grad():
        full = model(tokens, th.ones(batch, 3 * n_steps, dtype=th.bool)).hidden
        steps = incremental_outputs(model, tokens, read_with_step=read_with_step)
    full_r_o = full.view(batch, n_steps, 3, -1)[:, :, :2].reshape(batch, 2 * n_steps, -1)
    th.testing.assert_close(steps, full_r_o, atol=1e-9, rtol=1e-7)


def test_incremental_inference_follows_weight_updates():
    # inference folds some weights into cached copies and views: updates in place (optimizer steps, loads) and
    # replaced parameters (load_state_dict(assign=True)) must both reach them
    model = make_model(mode="rate", mem_len=4)
    tokens = th.randn(2, 3 * 6, 16, dtype=th.float64)
    valid = th.ones(2, 18, dtype=th.bool)
    inference = IncrementalInference(model)

    def full_forward():
        return model(tokens, valid).hidden.view(2, 6, 3, -1)[:, :, :2].reshape(2, 12, -1)

    with th.no_grad():
        outputs = [incremental_outputs(model, tokens, inference)]
        for layer in model.layers:
            layer.qkv.weight.mul_(1.5)
            layer.pos_proj.weight.add_(0.1)
        model.content_bias.add_(0.2)
        model.load_state_dict({"position_bias": model.position_bias - 0.3}, strict=False)
        outputs.append(incremental_outputs(model, tokens, inference))
        th.testing.assert_close(outputs[-1], full_forward(), atol=1e-9, rtol=1e-7)
        replaced = {f"layers.{i}.out_proj.weight": layer.out_proj.weight * 0.5 for i, layer in enumerate(model.layers)}
        model.load_state_dict(replaced, strict=False, assign=True)  # new Parameter objects
        outputs.append(incremental_outputs(model, tokens, inference))
        th.testing.assert_close(outputs[-1], full_forward(), atol=1e-9, rtol=1e-7)
    assert not th.allclose(outputs[0], outputs[1]) and not th.allclose(outputs[1], outputs[2])


def test_incremental_inference_refuses_training_mode():
    model = make_model().train()
    with pytest.raises(RuntimeError, match=r"eval mode: call \.eval\(\)"):
        incremental_outputs(model, th.randn(1, 9, 16, dtype=th.float64))


def test_read_tokens_ignore_segment_content_and_later_segments_see_earlier_ones_only_through_memory():
    model = make_model(mode="rmt")
    tokens = th.randn(1, 18, 16, dtype=th.float64)
    valid = th.ones(1, 18, dtype=th.bool)
    changed = tokens.clone()
    changed[:, :9] += 1.0  # change only the first segment
    with th.no_grad():
        base, other = model(tokens, valid).hidden, model(changed, valid).hidden
        same_memory = model.forward_segment(changed[:, 9:], valid[:, 9:], model(tokens[:, :9], valid[:, :9]).memory)
    assert not th.allclose(base[:, 9:], other[:, 9:])  # memory carries information forward
    th.testing.assert_close(same_memory.hidden, base[:, 9:])  # ...and nothing else does


def test_padding_is_kept_out_of_memory():
    model = make_model()
    tokens = th.randn(2, 9, 16, dtype=th.float64)
    valid = th.ones(2, 9, dtype=th.bool)
    valid[:, 6:] = False
    noisy = tokens.clone()
    noisy[:, 6:] = 100.0
    with th.no_grad():
        a, b = model(tokens, valid), model(noisy, valid)
    th.testing.assert_close(a.memory, b.memory)
    th.testing.assert_close(a.hidden[:, :6], b.hidden[:, :6])


def test_all_padding_segment_gives_finite_outputs():
    model = make_model().train()
    tokens = th.randn(2, 18, 16, dtype=th.float64)
    valid = th.zeros(2, 18, dtype=th.bool)
    out = model(tokens, valid)
    assert th.isfinite(out.hidden).all() and th.isfinite(out.memory).all()


@pytest.mark.parametrize("memory_grad, mrv_trained", [("bptt", True), ("detach", False)])
def test_memory_gradient_modes(memory_grad, mrv_trained):
    model = make_model(memory_grad=memory_grad).train()
    tokens = th.randn(2, 18, 16, dtype=th.float64)
    out = model(tokens, th.ones(2, 18, dtype=th.bool))
    out.hidden[:, 9:].sum().backward()  # a loss on the second segment only
    mrv_grad = sum(p.grad.abs().sum() for p in model.mrv.parameters() if p.grad is not None)
    assert bool(mrv_grad > 0) == mrv_trained


@pytest.mark.parametrize("n_heads_mrv, mrv_act", [(1, "relu"), (4, "tanh")])
def test_memory_retention_valve_is_the_multihead_attention_it_holds(n_heads_mrv, mrv_act):
    model = make_model(n_heads_mrv=n_heads_mrv, mrv_act=mrv_act, n_mem_tokens=3, dropatt=0.0).train()
    memory, written = th.randn(2, 3, 16, dtype=th.float64), th.randn(2, 3, 16, dtype=th.float64)
    candidates = model.mrv.act(written)
    expected = model.mrv.attn(memory, candidates, candidates, need_weights=False)[0]
    th.testing.assert_close(model.mrv(memory, written), expected)
    model.mrv(memory, written).sum().backward()
    assert all(param.grad is not None and param.grad.abs().sum() > 0 for param in model.mrv.parameters())


def test_dropout_off_in_eval_gives_deterministic_outputs():
    model = make_model(dropout=0.5, dropatt=0.5)
    tokens = th.randn(1, 9, 16, dtype=th.float64)
    valid = th.ones(1, 9, dtype=th.bool)
    with th.no_grad():
        th.testing.assert_close(model(tokens, valid).hidden, model(tokens, valid).hidden)


def test_dropout_keeps_each_entry_with_probability_1_minus_p_scaled_up():
    x = th.ones(200, 500, dtype=th.float64, requires_grad=True)
    out = dropout(0.3).train()(x)
    kept = out != 0
    assert abs(kept.double().mean().item() - 0.7) < 0.005  # 100,000 draws: the standard error is 0.0015
    th.testing.assert_close(out[kept], th.full_like(out[kept], 1 / 0.7))
    out.sum().backward()
    th.testing.assert_close(x.grad, out.detach())  # the gradient is the scaled mask


def test_memory_tokens_start_distinct_unless_shared():
    assert not th.allclose(make_model().initial_memory[0], make_model().initial_memory[1])
    shared = make_model(shared_mem_init=True).initial_memory
    th.testing.assert_close(shared[0], shared[1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mode="gpt"), "mode='gpt'"),
        (dict(memory_grad="none"), "memory_grad"),
        (dict(mrv_act="gelu"), "mrv_act"),
        (dict(segment_len=0), "segment_len=0 must be >= 1"),
        (dict(n_mem_tokens=-1), "n_mem_tokens=-1"),
        (dict(mode="rate", n_mem_tokens=0), "n_mem_tokens >= 1"),
        (dict(mode="trxl", mem_len=0), "mem_len > 0"),
        (dict(d_model=10, n_heads=3), "divisible by n_heads"),
        (dict(d_model=16, n_heads_mrv=3), "n_heads_mrv=3"),
        (dict(dropout=1.0), "dropout=1.0"),
    ],
)
def test_bad_config_is_rejected_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        RATEConfig(**kwargs)
