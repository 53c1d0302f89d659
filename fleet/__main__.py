"""`python -m fleet ...`: the whole `ttsfleet` command, server verbs included, without
relying on installed entry points (how the embedded fleet starts its processes)."""

import sys

from client.cli import main
from fleet.cli import register

sys.exit(main(registrars=[register]))
