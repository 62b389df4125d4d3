"""What the desktop's GUI process loads to talk to the cluster stays free of cv2 and torch."""

import subprocess
import sys


def test_scheduler_and_job_settings_load_neither_cv2_nor_torch() -> None:
    code = (
        "import sys;"
        "import lama_desktop.cluster.scheduler, lama_desktop.cluster.agent;"
        "import lama_desktop.engine.pipeline, lama_desktop.engine.plan;"
        "print(','.join(m for m in ('cv2', 'torch', 'PySide6') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
