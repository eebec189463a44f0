"""The README tells the truth about what can be configured."""

import re

from tests.datasets import ROOT

# Code that runs in Kenpin's processes (not the tests, the benchmark or the scripts).
RUNTIME = ("accounts", "console", "core", "engine", "inference", "lookout", "projects", "training")
ENV_READ = re.compile(
    r"""(?:\benv(?:\.\w+)?\(|os\.environ\.get\(|os\.getenv\(|os\.environ\[)\s*["']([A-Z][A-Z0-9_]+)["']"""
)
# Set by Kenpin for its own processes, not by the operator.
NOT_SETTINGS = {"DJANGO_SETTINGS_MODULE"}


def settings_read_from_the_environment() -> set[str]:
    names = set()
    for app in RUNTIME:
        for path in (ROOT / app).rglob("*.py"):
            names |= set(ENV_READ.findall(path.read_text()))
    return names - NOT_SETTINGS


def test_the_configuration_table_lists_every_setting_the_code_reads():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names = settings_read_from_the_environment()
    assert {"DATABASE_URL", "KENPIN_EMBEDDED_REDIS_PORT", "S3_BUCKET"} <= names  # the scan finds them
    missing = sorted(name for name in names if f"`{name}`" not in section)
    assert not missing, f"settings missing from the README's configuration table: {missing}"
