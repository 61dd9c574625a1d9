"""``python -m cliplab.cli``: the same as the ``cliplab`` command."""
import sys

from . import main

sys.exit(main())
