"""unimo-g core: the shard schema, prompt composition, configs, models and diffusion (no Beam)."""
