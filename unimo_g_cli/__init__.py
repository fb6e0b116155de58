"""`unimo-g`: the toolkit's one command, an argparse subcommand per job (`add_arguments`, `run`).

The core (`unimo_g/`) never imports this package; see `unimo_g_cli.commands` for the table of
subcommands.
"""

from importlib import metadata as _metadata

DISTRIBUTION = "unimo-g-toolkit"

try:
    __version__ = _metadata.version(DISTRIBUTION)
except _metadata.PackageNotFoundError:  # run from a checkout that is not installed
    __version__ = "0+unknown"
