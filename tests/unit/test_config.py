"""Desktop settings: TOML round trip, LAMA_* overrides, clear errors, isolated folders."""

from pathlib import Path

import pytest

from lama_desktop.config import AppSettings, ConfigError, app_dirs, load_settings, save_settings


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CONFIG", "DATA", "LOG"):
        monkeypatch.setenv(f"LAMA_{name}_DIR", str(tmp_path / name.lower()))
    monkeypatch.delenv("LAMA_MODELS_DIR", raising=False)
    for var in ("LAMA_MODEL", "LAMA_DEVICE", "LAMA_LOCAL_WORKERS", "LAMA_BRUSH_SIZE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_app_dirs_follow_environment(dirs: Path) -> None:
    found = app_dirs()
    assert found.config == dirs / "config"
    assert found.log == dirs / "log"
    assert found.models == dirs / "data" / "models"
    assert found.settings_file == dirs / "config" / "settings.toml"


def test_defaults_when_no_file(dirs: Path) -> None:
    assert load_settings() == AppSettings()


def test_save_then_load_round_trip(dirs: Path) -> None:
    settings = AppSettings(model="opencv-telea", brush_size=12, run_mode="manual")
    settings.add_recent(dirs / "a.jpg")
    path = save_settings(settings)
    assert path == app_dirs().settings_file
    assert load_settings() == settings
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_environment_overrides_file(dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_settings(AppSettings(model="opencv-telea", brush_size=12))
    monkeypatch.setenv("LAMA_MODEL", "opencv-ns")
    monkeypatch.setenv("LAMA_BRUSH_SIZE", "77")
    monkeypatch.setenv("LAMA_LOCAL_WORKERS", "off")
    settings = load_settings()
    assert (settings.model, settings.brush_size, settings.local_workers) == ("opencv-ns", 77, False)
    assert settings.workers() == 0
    monkeypatch.setenv("LAMA_LOCAL_WORKERS", "3")
    assert load_settings().workers() == 3
    monkeypatch.setenv("LAMA_LOCAL_WORKERS", "auto")
    assert load_settings().workers() == "auto"


@pytest.mark.parametrize(
    ("var", "value", "words"),
    [
        ("LAMA_MODEL", "dalle", "model = 'dalle'"),
        ("LAMA_BRUSH_SIZE", "huge", "brush_size"),
        ("LAMA_BRUSH_SIZE", "0", "between 1 and 500"),
        ("LAMA_DEVICE", "tpu", "device = 'tpu'"),
        ("LAMA_CLOSE_TO_TRAY", "maybe", "true or false"),
    ],
)
def test_bad_environment_value_is_named(
    dirs: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str, words: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=words):
        load_settings()


def test_broken_file_falls_back_to_defaults(dirs: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = app_dirs().settings_file
    path.parent.mkdir(parents=True)
    path.write_text("model = [unclosed", encoding="utf-8")
    assert load_settings() == AppSettings()
    path.write_text('brush_size = "wide"\nwhat = 1\nmodel = "opencv-ns"\n', encoding="utf-8")
    settings = load_settings()
    assert settings.model == "opencv-ns" and settings.brush_size == AppSettings().brush_size
    assert "unknown setting 'what'" in caplog.text


def test_one_out_of_range_value_costs_only_that_setting(dirs: Path) -> None:
    path = app_dirs().settings_file
    path.parent.mkdir(parents=True)
    path.write_text('brush_size = 100000\nmodel = "opencv-telea"\n', encoding="utf-8")
    settings = load_settings()
    assert settings.model == "opencv-telea"
    assert settings.brush_size == AppSettings().brush_size


def test_recent_files_are_unique_and_capped(dirs: Path) -> None:
    settings = AppSettings()
    for i in range(15):
        settings.add_recent(dirs / f"{i}.png")
    settings.add_recent(dirs / "3.png")
    assert len(settings.recent_files) == 10
    assert settings.recent_files[0].endswith("3.png")
    assert len(set(settings.recent_files)) == 10


def test_environment_override_is_not_saved_unless_changed(
    dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_settings(AppSettings(brush_size=12, model="opencv-telea"))
    monkeypatch.setenv("LAMA_LOCAL_WORKERS", "off")
    monkeypatch.setenv("LAMA_BRUSH_SIZE", "90")
    settings = load_settings()
    assert settings.local_workers is False and settings.brush_size == 90
    settings.model = "opencv-ns"  # changed by the user: saved
    settings.brush_size = 33  # changed by the user although it came from the environment
    save_settings(settings)
    monkeypatch.delenv("LAMA_LOCAL_WORKERS")
    monkeypatch.delenv("LAMA_BRUSH_SIZE")
    again = load_settings()
    assert again.local_workers is True, "the one-off override stuck in the file"
    assert (again.model, again.brush_size) == ("opencv-ns", 33)
    assert "environment" not in app_dirs().settings_file.read_text()
