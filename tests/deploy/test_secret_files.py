"""Secrets from files (``SANDBOX_SECRETS_DIR``), as Compose and Kubernetes mount them."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.settings import SECRETS_DIR_VARIABLE, SETTINGS_FILE, load_settings


def test_secret_files_set_settings_after_environment_and_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets, home = tmp_path / "secrets", tmp_path / "home"
    secrets.mkdir()
    home.mkdir()
    (secrets / "sandbox_db_url").write_text("postgresql+psycopg://gw:pw@db/sandbox\n", encoding="utf-8")
    (secrets / "sandbox_hub_api_token").write_text("from-file\n", encoding="utf-8")
    (home / SETTINGS_FILE).write_text("SANDBOX_RATE_LIMIT_PER_MINUTE=7\n", encoding="utf-8")
    monkeypatch.setenv(SECRETS_DIR_VARIABLE, str(secrets))
    monkeypatch.setenv("SANDBOX_HUB_API_TOKEN", "from-environment")
    settings = load_settings(home)
    assert settings.db_url == "postgresql+psycopg://gw:pw@db/sandbox"
    assert settings.hub_api_token == "from-environment"  # the environment beats the file
    assert settings.rate_limit_per_minute == 7
    (home / SETTINGS_FILE).write_text("SANDBOX_DB_URL=sqlite:///from-settings-file.db\n", encoding="utf-8")
    assert load_settings(home).db_url == "sqlite:///from-settings-file.db"  # settings.env beats the file
    monkeypatch.delenv(SECRETS_DIR_VARIABLE)
    (home / SETTINGS_FILE).unlink()
    assert load_settings(home).db_url is None
