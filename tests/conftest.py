"""Shared test set-up: headless Qt, isolated user folders."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
