"""Test helper: an export rewritten with the hybrid's item-item weights."""

from __future__ import annotations

import scipy.sparse as sp

from walsrec.serving.export import read_export, write_export


def with_item_item(export_path, model_dir, weights, *, beta: float, regularization: float):
    """A new export in ``model_dir`` holding ``export_path``'s model and EASE's ``weights``
    (dense or CSR) blended at ``beta``."""
    ex = read_export(export_path)
    return write_export(
        model_dir,
        user_factors=ex.user_factors,
        item_factors=ex.item_factors,
        users=ex.users,
        items=ex.items,
        user_items=ex.user_items,
        hyperparameters=ex.meta["hyperparameters"],
        item_item=(
            {
                "blend_weight": beta,
                "regularization": regularization,
                "form": "sparse" if sp.issparse(weights) else "dense",
            },
            weights,
        ),
    )
