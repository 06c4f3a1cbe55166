"""``python -m kvbackup.cli``: the ``kvbackup`` command."""

from kvbackup.cli import main

raise SystemExit(main())
