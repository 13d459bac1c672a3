"""`python -m jobs`, and the application file spark-submit runs: the `gamify` command line."""

import sys

from jobs.cli import main

if __name__ == "__main__":
    sys.exit(main())
