"""Caption -> entity phrases with spaCy: noun chunks, tagger repairs, object filters, repeated mentions."""
