"""`python -m decoupling.data [--force] [--quiet]`: prepare the data and print what was prepared."""
from decoupling.data.preparation import main_data

raise SystemExit(main_data())
