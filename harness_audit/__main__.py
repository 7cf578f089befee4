"""``python -m harness_audit COMMAND``: see harness_audit.cli."""

from harness_audit.cli import main

raise SystemExit(main())
