"""The data-construction job (`unimo-g build`): image-caption pairs -> multimodal-prompt shards, its command, request, Beam graph and stages."""
