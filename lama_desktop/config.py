"""Desktop settings: a TOML file in the user's config folder, overridable by LAMA_* variables."""

from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lama_desktop.engine.base import BUILTIN_SPECS
from lama_desktop.engine.hd import HDStrategy
from lama_desktop.engine.modelstore import default_models_dir

log = logging.getLogger(__name__)

APP_NAME = "lama-desktop"
SETTINGS_FILE = "settings.toml"
LOG_FILE = "lama-desktop.log"  # in AppDirs.log; written by app.py, shown by Help > Logs
MAX_RECENT_FILES = 10

MODELS = tuple(spec.name for spec in BUILTIN_SPECS)
DEVICES = ("auto", "cpu", "cuda", "mps")
HD_STRATEGIES = tuple(strategy.value for strategy in HDStrategy)
RUN_MODES = ("release", "manual")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


_NOT_IN_FILE = ("environment",)


class ConfigError(ValueError):
    """A setting with a value that cannot be used; the message names the setting and the value."""


@dataclass(frozen=True)
class AppDirs:
    """The folders the desktop app writes to."""

    config: Path
    data: Path
    log: Path
    models: Path

    @property
    def settings_file(self) -> Path:
        return self.config / SETTINGS_FILE

    @property
    def journal(self) -> Path:
        """The scheduler's queue journal: unfinished batches resume from it on the next start."""
        return self.data / "journal.sqlite3"

    @property
    def keypair(self) -> Path:
        """This desktop's Curve key pair, which paired agents know it by."""
        return self.data / "desktop.key"


def app_dirs() -> AppDirs:
    """The platform's folders for this app; LAMA_CONFIG_DIR, LAMA_DATA_DIR, LAMA_LOG_DIR and
    LAMA_MODELS_DIR replace each one (tests point them into a temporary folder)."""
    import platformdirs

    def pick(env: str, default: str) -> Path:
        override = os.environ.get(env)
        return Path(override).expanduser() if override else Path(default)

    data = pick("LAMA_DATA_DIR", platformdirs.user_data_dir(APP_NAME, appauthor=False))
    return AppDirs(
        config=pick("LAMA_CONFIG_DIR", platformdirs.user_config_dir(APP_NAME, appauthor=False)),
        data=data,
        log=pick("LAMA_LOG_DIR", platformdirs.user_log_dir(APP_NAME, appauthor=False)),
        models=default_models_dir(),  # the workers' rule too: one folder for app, CLI, workers
    )


@dataclass
class AppSettings:
    """Everything the user can set; the defaults are what a first start uses."""

    model: str = "lama"
    device: str = "auto"
    hd_strategy: str = "crop"
    run_mode: str = "release"  # "release": run when a stroke ends; "manual": the Run button
    brush_size: int = 40
    recent_files: list[str] = field(default_factory=list)
    local_workers: bool = True
    local_worker_count: int = 0  # 0 = auto (one per GPU, else one CPU worker)
    job_timeout: float = 600.0  # seconds before a running job is given up and retried
    close_to_tray: bool = True
    jpeg_quality: int = 95
    # IOPaint's HTTP API (and /metrics) in front of this app's cluster; off unless asked for.
    serve_api: bool = False
    serve_host: str = "127.0.0.1"  # any other address needs serve_token
    serve_port: int = 8080
    serve_token: str = ""
    # Set by load_settings: for each LAMA_* override, (value in the file, value from the
    # environment). Saving writes the file's value back unless the user changed the setting,
    # so a one-off `LAMA_LOCAL_WORKERS=0 lama-desktop` does not stick.
    environment: dict[str, tuple[object, object]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def validate(self) -> None:
        """Raise ConfigError naming the first setting whose value cannot be used."""
        choices = {
            "model": MODELS,
            "device": None,
            "hd_strategy": HD_STRATEGIES,
            "run_mode": RUN_MODES,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if allowed is not None and value not in allowed:
                raise ConfigError(f"{name} = {value!r}: choose one of {', '.join(allowed)}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(f"device = {self.device!r}: choose auto, cpu, cuda, cuda:N or mps")
        ranges = {
            "brush_size": (1, 500),
            "local_worker_count": (0, 64),
            "job_timeout": (1, 86400),
            "jpeg_quality": (1, 100),
            "serve_port": (1, 65535),
        }
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(f"{name} = {value!r}: must be between {low} and {high}")
        if self.serve_api and not self.serve_token and self.serve_host not in _LOOPBACK:
            raise ConfigError(
                f"serve_host = {self.serve_host!r}: other machines could use the API; "
                "set serve_token (clients send `Authorization: Bearer TOKEN`) or use 127.0.0.1"
            )

    def add_recent(self, path: Path) -> None:
        """Put `path` first in the recent files, without duplicates, keeping the list short."""
        text = str(Path(path).resolve())
        self.recent_files = [text, *(p for p in self.recent_files if p != text)]
        del self.recent_files[MAX_RECENT_FILES:]

    def workers(self) -> int | str:
        """What the local agent is asked for: 0 when switched off, "auto", or a count."""
        if not self.local_workers:
            return 0
        return self.local_worker_count or "auto"


def _convert(name: str, kind: Any, raw: object, origin: str) -> object:
    """Turn a TOML or environment value into the field's type, or raise ConfigError."""
    try:
        if kind in ("bool", bool):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError("expected true or false")
        if kind in ("int", int):
            if isinstance(raw, bool):
                raise ValueError("expected a whole number")
            return int(str(raw).strip())
        if kind in ("float", float):
            return float(str(raw).strip())
        if kind in ("list[str]",):
            if isinstance(raw, str):
                return [p for p in raw.split(os.pathsep) if p]
            if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
                raise ValueError("expected a list of strings")
            return list(raw)
        return str(raw).strip()
    except ValueError as exc:
        raise ConfigError(f"{origin} {name} = {raw!r}: {exc}") from None


def _env_overrides() -> dict[str, object]:
    """LAMA_<SETTING> for each setting; LAMA_LOCAL_WORKERS takes off, auto or a count."""
    values: dict[str, object] = {}
    for f in fields(AppSettings):
        if f.name in _NOT_IN_FILE or f.name == "local_workers":
            continue  # local_workers is read below, where it also takes a count
        raw = os.environ.get(f"LAMA_{f.name.upper()}")
        if raw is not None:
            values[f.name] = _convert(f.name, f.type, raw, "environment variable")
    workers = os.environ.get("LAMA_LOCAL_WORKERS")
    if workers is not None:
        text = workers.strip().lower()
        if text in {"off", "0", "false", "no"}:
            values["local_workers"] = False
        elif text == "auto":
            values.update(local_workers=True, local_worker_count=0)
        else:
            count = _convert("LAMA_LOCAL_WORKERS", int, text, "environment variable")
            values.update(local_workers=True, local_worker_count=count)
    return values


def _file_values(path: Path) -> dict[str, object]:
    """Known settings from the TOML file; unknown keys and a broken file are logged, not fatal."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        log.warning("settings file %s cannot be read (%s); using the defaults", path, exc)
        return {}
    known = {f.name: f.type for f in fields(AppSettings) if f.name not in _NOT_IN_FILE}
    values: dict[str, object] = {}
    for key, raw in data.items():
        if key not in known:
            log.warning("settings file %s: unknown setting %r ignored", path, key)
            continue
        try:
            values[key] = _convert(key, known[key], raw, f"{path}:")
        except ConfigError as exc:
            log.warning("%s; using the default", exc)
    return values


def load_settings(path: Path | None = None) -> AppSettings:
    """Defaults, then the settings file, then LAMA_* variables (which raise on a bad value)."""
    path = path or app_dirs().settings_file
    values = _file_values(path)
    settings = AppSettings(**values)  # type: ignore[arg-type]
    try:
        settings.validate()
    except ConfigError:
        # Keep every value that is valid with the ones kept so far; only a bad one falls back
        # to its default (a single typo must not cost the user recent files and the rest).
        kept: dict[str, object] = {}
        for key, value in values.items():
            try:
                AppSettings(**{**kept, key: value}).validate()  # type: ignore[arg-type]
            except ConfigError as exc:
                log.warning("settings file %s: %s; %s uses its default", path, exc, key)
            else:
                kept[key] = value
        settings = AppSettings(**kept)  # type: ignore[arg-type]
    env = _env_overrides()
    overridden = dataclasses.replace(settings, **env)  # type: ignore[arg-type]
    overridden.validate()
    overridden.environment = {key: (getattr(settings, key), value) for key, value in env.items()}
    return overridden


def _file_form(settings: AppSettings) -> dict[str, object]:
    """What goes into the file: every setting, with environment overrides left out."""
    data = dataclasses.asdict(settings)
    for key in _NOT_IN_FILE:
        data.pop(key)
    for key, (in_file, from_env) in settings.environment.items():
        if data[key] == from_env:
            data[key] = in_file
    return data


def save_settings(settings: AppSettings, path: Path | None = None) -> Path:
    """Write the settings file atomically (temporary file in the same folder, then rename)."""
    import tomli_w

    settings.validate()
    path = path or app_dirs().settings_file
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temp.write_text(tomli_w.dumps(_file_form(settings)), encoding="utf-8")
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path
