"""Models: the frozen multimodal prompt encoder (and the denoiser that it conditions)."""
