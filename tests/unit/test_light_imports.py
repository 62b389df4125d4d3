"""What the desktop's GUI process loads to talk to the cluster stays free of cv2 and torch."""

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = "print(','.join(m for m in ('cv2', 'torch', 'PySide6') if m in sys.modules))"


def loaded_heavy_modules(code: str) -> str:
    probe = f"import sys\n{code}\n{HEAVY}"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_scheduler_and_job_settings_load_neither_cv2_nor_torch() -> None:
    code = (
        "import lama_desktop.cluster.scheduler, lama_desktop.cluster.agent\n"
        "import lama_desktop.engine.pipeline, lama_desktop.engine.plan"
    )
    assert loaded_heavy_modules(code) == ""


def test_memory_estimates_for_routing_load_neither_cv2_nor_torch() -> None:
    code = (
        "from lama_desktop.cluster.jobfiles import estimate_memory\n"
        "from lama_desktop.engine.pipeline import JobSettings\n"
        "for model in ('opencv-ns', 'opencv-telea', 'lama'):\n"
        "    assert estimate_memory(JobSettings(model=model), (768, 1024)) > 0"
    )
    assert loaded_heavy_modules(code) == ""


def test_the_app_and_its_workers_agree_on_the_models_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from lama_desktop.config import app_dirs
    from lama_desktop.engine.modelstore import ModelStore

    monkeypatch.delenv("LAMA_MODELS_DIR")
    monkeypatch.setenv("LAMA_DATA_DIR", str(tmp_path / "data"))
    assert app_dirs().models == ModelStore().root == tmp_path / "data" / "models"
