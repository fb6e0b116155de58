"""Diffusion math: noise schedules, training losses, condition dropout and sampling.

Nothing here imports the denoiser: models are passed in as functions
`model_fn(noisy_latents (B,C,h,w), timesteps (B,), cond (B,T,D), cond_mask (B,T) bool) -> (B,C,h,w)`.
"""
