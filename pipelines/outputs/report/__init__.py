"""`unimo-g report OUT`: one self-contained HTML page about a pipeline output folder.

Statistics come from Parquet columns only, one row group at a time (`stats`); image bytes are
read only for the few sampled rows (`sample`); plots are matplotlib PNGs embedded as base64
(`plots`); the page (`page`) shows `pipelines.outputs.gallery`'s sample cards. Reads local folders and object stores through Beam's FileSystems (`files`).
"""
