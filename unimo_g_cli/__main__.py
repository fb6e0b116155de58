"""`python -m unimo_g_cli ...` is `unimo-g ...`."""

import sys

from unimo_g_cli.main import main

sys.exit(main())
