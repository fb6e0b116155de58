"""The feature job (`unimo-g features`): prompt shards -> stage-1 training features (VAE posteriors, encoder states)."""
