"""The secret key of an installation that did not set DJANGO_SECRET_KEY."""

import os
import secrets
import time
from pathlib import Path


def data_dir_secret_key(data_dir: Path) -> str:
    """Read the key kept in the data folder, creating it (mode 0600) on first use.

    Several processes (web server, workers) may start at once; `O_EXCL` makes exactly one of
    them write the file and the others read what it wrote.
    """
    path = data_dir / "secret_key"
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.05)
        raise RuntimeError(f"{path} is empty; delete it and start again") from None
    key = secrets.token_urlsafe(50)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key
