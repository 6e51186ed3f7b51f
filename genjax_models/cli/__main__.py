"""``python -m genjax_models.cli ...``: the same as the ``genjax-models`` console script."""

import sys

from genjax_models.cli.main import main

sys.exit(main())
