"""``python -m harness_audit COMMAND``: see harness_audit.cli."""

import sys

from harness_audit.cli import main

sys.exit(main())
