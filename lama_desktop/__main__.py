"""`python -m lama_desktop`: the same as the `lama-desktop` command."""

import sys

from lama_desktop.cli import main

sys.exit(main())
