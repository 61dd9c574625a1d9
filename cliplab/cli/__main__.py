"""``python -m cliplab.cli``: the same as the ``cliplab`` command."""
from . import run

run()
