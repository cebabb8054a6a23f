from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The team's real datasets (../shared/data); tests using it skip when it is absent."""
    if not (SHARED_DATA / "ml100k.csv").is_file():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A small prepared DATA_DIR with a per-user eval split (generated visits)."""
    import pyarrow.csv as pcsv

    from walsrec.data.prepare import prepare
    from walsrec.datasets import generate_visits

    root = tmp_path_factory.mktemp("prepared")
    pcsv.write_csv(generate_visits(20_000, n_users=600, n_items=250, seed=11), root / "v.csv")
    prepare(
        str(root / "v.csv"),
        root / "data",
        user_col="visitor_id",
        item_col="article_id",
        rating_col="session_duration",
        rating_transform="scaled-median",
        eval_fraction=0.2,
        split="user",
        seed=0,
    )
    return root / "data"
