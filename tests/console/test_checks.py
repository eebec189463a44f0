"""Warnings for installations whose machines share a database, and the systemd units."""

import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from console.checks import shared_setup_problems

ROOT = Path(settings.BASE_DIR)


def test_a_database_server_without_a_shared_secret_key_is_warned_about(settings, monkeypatch):
    # The engine's name only (no connection is opened): the setting itself stays as it is.
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.postgresql")
    settings.S3_BUCKET = "kenpin"
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    (problem,) = shared_setup_problems()
    assert "DJANGO_SECRET_KEY is not set" in problem and "same DJANGO_SECRET_KEY on every machine" in problem
    monkeypatch.setenv("DJANGO_SECRET_KEY", "shared")
    assert shared_setup_problems() == []


def test_one_machine_on_sqlite_is_not_warned_about(settings, monkeypatch):
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.sqlite3")
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    assert shared_setup_problems() == []


UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))


def test_there_is_a_unit_for_each_piece():
    assert [u.name for u in UNITS] == [
        "kenpin-beat.service",
        "kenpin-inference-worker.service",
        "kenpin-training-worker.service",
        "kenpin-web.service",
    ]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_each_unit_restarts_its_process_and_systemd_accepts_it(unit, tmp_path):
    text = unit.read_text()
    assert "Restart=always" in text and "StartLimitBurst=5" in text
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    # Pointed at this checkout and a user that exists, so that only the unit's own syntax is judged.
    local = tmp_path / unit.name
    local.write_text(
        text.replace("/opt/kenpin", str(ROOT))
        .replace("/etc/kenpin/kenpin.env", str(ROOT / "deploy" / "systemd" / "kenpin.env.example"))
        .replace("User=kenpin", "User=root")
        .replace("Group=kenpin", "Group=root")
    )
    result = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
