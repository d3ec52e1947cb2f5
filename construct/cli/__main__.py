"""``python -m construct.cli``: the ``rawc`` command line."""
import sys

from construct.cli.main import main

sys.exit(main())
