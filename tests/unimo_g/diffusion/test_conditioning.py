import pytest
import torch

from unimo_g.diffusion.conditioning import drop_conditions, match_lengths, pad_condition


def _conds():
    cond = torch.randn(4, 3, 5)
    cond_mask = torch.ones(4, 3, dtype=torch.bool)
    uncond = torch.randn(1, 6, 5)
    uncond_mask = torch.tensor([[True, True, False, False, False, False]])
    return cond, cond_mask, uncond, uncond_mask


def test_pad_condition_appends_masked_zeros():
    cond, mask, _, _ = _conds()
    padded, padded_mask = pad_condition(cond, mask, 5)
    assert padded.shape == (4, 5, 5) and torch.equal(padded[:, :3], cond) and padded[:, 3:].abs().sum() == 0
    assert padded_mask[:, :3].all() and not padded_mask[:, 3:].any()
    with pytest.raises(ValueError):
        pad_condition(cond, mask, 2)


def test_match_lengths_broadcasts_the_unconditional_encoding():
    cond, mask, uncond, umask = _conds()
    c, cm, u, um = match_lengths(cond, mask, uncond, umask)
    assert c.shape == u.shape == (4, 6, 5) and cm.shape == um.shape == (4, 6)
    assert torch.equal(c[:, :3], cond) and not cm[:, 3:].any()
    assert all(torch.equal(u[i], uncond[0]) and torch.equal(um[i], umask[0]) for i in range(4))
    with pytest.raises(ValueError, match="batch"):
        match_lengths(cond, mask, torch.randn(2, 6, 5), torch.ones(2, 6, dtype=torch.bool))


def test_drop_probabilities_zero_and_one():
    cond, mask, uncond, umask = _conds()
    kept, kept_mask, dropped = drop_conditions(cond, mask, uncond, umask, 0.0)
    assert not dropped.any() and torch.equal(kept[:, :3], cond) and not kept_mask[:, 3:].any()
    replaced, replaced_mask, dropped = drop_conditions(cond, mask, uncond, umask, 1.0)
    assert dropped.all()
    assert torch.equal(replaced, uncond.expand(4, -1, -1)) and torch.equal(replaced_mask, umask.expand(4, -1))
    with pytest.raises(ValueError):
        drop_conditions(cond, mask, uncond, umask, 1.5)


def test_drop_is_per_sample_and_seeded():
    cond, mask, uncond, umask = _conds()
    cond = torch.randn(64, 3, 5)
    mask = torch.ones(64, 3, dtype=torch.bool)
    out_a, _, dropped_a = drop_conditions(cond, mask, uncond, umask, 0.5, torch.Generator().manual_seed(3))
    out_b, _, dropped_b = drop_conditions(cond, mask, uncond, umask, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(dropped_a, dropped_b) and torch.equal(out_a, out_b)
    assert 0 < int(dropped_a.sum()) < 64
    for i in range(64):
        expected = uncond[0] if dropped_a[i] else torch.cat([cond[i], torch.zeros(3, 5)])
        assert torch.equal(out_a[i], expected)
