"""`farline config`: every setting with its source, secrets masked, bad settings named."""

from __future__ import annotations

import json

from click.testing import CliRunner

from harness.cli import main
from harness.config import FarlineConfig


def test_config_prints_every_setting_with_secrets_masked(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FARLINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdefghijklmnop")
    monkeypatch.setenv("FARLINE_S3_SECRET_ACCESS_KEY", "s3-secret-value-1234")
    monkeypatch.setenv("FARLINE_CREDENTIALS_ARCHIVE_SECRET_ACCESS_KEY", "archive-secret-5678")
    monkeypatch.setenv("FARLINE_CREDENTIALS_ARCHIVE_ACCESS_KEY_ID", "AKIAARCHIVE")
    result = CliRunner().invoke(main, ["config", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["variable"]: row for row in map(json.loads, result.output.splitlines())}
    assert set(FarlineConfig.ENVIRONMENT.values()) <= set(rows)
    for secret in ("sk-live-abcdefghijklmnop", "s3-secret-value-1234", "archive-secret-5678"):
        assert secret not in result.output
    assert rows["OPENAI_API_KEY"] == {
        "variable": "OPENAI_API_KEY",
        "value": "*** (set)",
        "source": "environment",
    }
    assert rows["FARLINE_DATA_DIR"]["value"] == str(tmp_path)
    assert rows["FARLINE_MODEL"] == {"variable": "FARLINE_MODEL", "value": "gpt-5.1", "source": "default"}
    # derived defaults show what they work out to
    assert rows["FARLINE_SNAPSHOT_DIR"]["value"] == str(tmp_path / "snapshots")
    assert rows["FARLINE_CREDENTIALS_ARCHIVE_ACCESS_KEY_ID"]["value"] == "AKIAARCHIVE"
    plain = CliRunner().invoke(main, ["config"])
    assert "OPENAI_API_KEY" in plain.output and "*** (set)  [environment]" in plain.output


def test_a_bad_setting_is_refused_naming_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("FARLINE_SNAPSHOT_STORE", "s3")
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code != 0
    assert "FARLINE_SNAPSHOT_STORE=s3 needs FARLINE_S3_BUCKET" in result.output
