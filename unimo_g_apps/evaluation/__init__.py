"""The paper's evaluation: benchmarks read into cases, images generated for them, metrics and FID beside the paper's tables."""
