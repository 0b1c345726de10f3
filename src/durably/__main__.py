"""``python -m durably`` runs the command line."""

from __future__ import annotations

from durably.cli import main

raise SystemExit(main())
