"""console.wsgi: what a gunicorn worker has loaded before it accepts its first connection."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_loading_the_wsgi_application_imports_the_url_configuration_and_the_api():
    """Otherwise each worker's first requests after a start or a reload wait for those imports."""
    probe = "import sys, console.wsgi; print(all(m in sys.modules for m in ('console.urls', 'inference.api')))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "True"
