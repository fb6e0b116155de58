import pytest
import torch

from unimo_g.diffusion.schedule import NoiseScheduleConfig, make_sampler_scheduler, make_train_scheduler


def test_sd_betas_and_shared_schedule():
    config = NoiseScheduleConfig()
    train, sample = make_train_scheduler(config), make_sampler_scheduler(config)
    assert train.betas.shape == (1000,)
    # scaled_linear: betas are linear in sqrt(beta)
    torch.testing.assert_close(train.betas[0], torch.tensor(0.00085))
    torch.testing.assert_close(train.betas[-1], torch.tensor(0.012))
    torch.testing.assert_close(train.betas[500].sqrt(), torch.tensor((0.00085**0.5 + 500 / 999 * (0.012**0.5 - 0.00085**0.5))))
    assert torch.equal(train.alphas_cumprod, sample.alphas_cumprod)
    sample.set_timesteps(50)
    assert len(sample.timesteps) == 50 and int(sample.timesteps[0]) == 981 and int(sample.timesteps[-1]) == 1
    assert train.config.prediction_type == sample.config.prediction_type == "epsilon"


@pytest.mark.parametrize(
    "kwargs",
    [{"beta_schedule": "cosine"}, {"prediction_type": "sample"}, {"beta_start": 0.02}, {"num_train_timesteps": 1}],
)
def test_bad_configs_raise(kwargs):
    with pytest.raises(ValueError):
        NoiseScheduleConfig(**kwargs)
