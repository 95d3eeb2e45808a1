"""``python -m resumable``: the same as the ``resumable`` console script."""

from resumable.cli import main

raise SystemExit(main())
