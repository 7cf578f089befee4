"""``python -m harness_audit verify|status``: see harness_audit.cli."""

import sys

from harness_audit.cli import main

if __name__ == "__main__":
    sys.exit(main())
