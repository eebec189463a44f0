"""Where the shared photo data sets are: `shared/datasets` beside the project root (DEVELOPERS.md),
or wherever KENPIN_DATASETS points, for a checkout that lives elsewhere."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("KENPIN_DATASETS") or ROOT.parent / "shared" / "datasets")
if not (DATASETS / "cookies").is_dir():
    raise RuntimeError(
        f"The shared photo data sets are not at {DATASETS}. Put the checkout beside `shared/` "
        "or set KENPIN_DATASETS to the datasets folder."
    )
