"""Entry point for `python -m artgan`."""

import sys

from artgan.cli import main

sys.exit(main())
