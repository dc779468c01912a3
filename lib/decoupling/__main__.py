"""`python -m decoupling ...` is the same as the `decoupling` console script."""
from decoupling.cli import main

raise SystemExit(main())
