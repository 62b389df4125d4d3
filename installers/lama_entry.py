"""The script PyInstaller freezes: both bundled executables start here (see frozen_main)."""

import sys

from lama_desktop.frozen_main import main

if __name__ == "__main__":
    sys.exit(main())
