"""Images in the core: bounded decoding of untrusted bytes, batches for vision models, training-image geometry."""
