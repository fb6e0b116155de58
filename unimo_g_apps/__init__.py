"""Applications built on the core: generating images (and exporting a model) and the paper's evaluation.

Imports only `unimo_g`; only the `unimo-g` command imports it."""
