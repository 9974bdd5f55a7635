"""``python -m mecfed.cli``: the ``mecfed`` command."""

import sys

from mecfed.cli.main import main

sys.exit(main())
