"""Where the tests find real photos.

COOKIES: the cookie photos shipped in tests/fixtures (every photo of the shared set, same names,
shrunk to 240x320 px), so that the suite runs on a fresh clone. Every test on cookies uses them,
in CI too, so that a test behaves the same wherever it runs.

SHARED: the full shared data sets (aliens, ball_screw, solar_cell_mono, full-size cookies), in
`shared/datasets` beside the project root or wherever KENPIN_DATASETS points; None when absent.
Tests that need them carry the `shared_data` marker and are skipped, with the reason, without them.
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
COOKIES = FIXTURES / "cookies"

_named = os.environ.get("KENPIN_DATASETS")
if _named and not (Path(_named) / "cookies").is_dir():
    # A folder named on purpose but wrong is a mistake to report, not a reason to skip tests.
    raise RuntimeError(f"KENPIN_DATASETS={_named} holds no data sets (no cookies/ folder in it).")
_found = Path(_named) if _named else ROOT.parent / "shared" / "datasets"
SHARED: Path | None = _found if (_found / "cookies").is_dir() else None

SKIP_REASON = (
    f"needs the full photo sets of shared/datasets, not found at {_found}: put the checkout beside "
    "`shared/` or set KENPIN_DATASETS to the datasets folder (CI has them)"
)


def shared_set(name: str) -> Path:
    """The folder of a full shared data set; only tests marked `shared_data` may ask for one."""
    if SHARED is None:
        raise RuntimeError(f"The test reads {name} but has no `shared_data` marker: {SKIP_REASON}.")
    return SHARED / name
