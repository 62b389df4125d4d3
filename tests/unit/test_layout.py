"""The package imports without Qt or torch."""

import subprocess
import sys


def test_core_imports_stay_light() -> None:
    code = (
        "import sys, lama_desktop, lama_desktop.engine, lama_desktop.cluster.events;"
        "bad = [m for m in ('torch', 'PySide6', 'zmq') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
