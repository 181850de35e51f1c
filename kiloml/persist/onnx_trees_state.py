"""An imported ONNX tree ensemble saved as the ensemble's arrays (node ids, modes,
features, float32 thresholds, children, missing-value routing, leaf weights) and read back
through the same checks as the import (kiloml.models.onnx_trees.build_tables): a saved
pipeline may come from someone else. The C tables are rebuilt from them."""

from __future__ import annotations

from pathlib import Path

from kiloml.errors import KilomlError
from kiloml.models.onnx_trees import (
    ENSEMBLE_ARRAYS,
    ImportedForest,
    ensemble_from_state,
    ensemble_state,
)
from kiloml.persist.archive import ArrayBook
from kiloml.persist.fields import Fields

KIND = "imported_trees"
MAX_LABEL = 200


def save_imported_trees(model: ImportedForest, book: ArrayBook) -> dict:
    if model.ensemble is None:
        raise ValueError("an imported tree ensemble is saved once it is read")
    fields, arrays = ensemble_state(model.ensemble)
    return {"kind": KIND, "path": str(model.path), "n_classes": int(model.n_classes),
            "n_features": fields["n_features"], "class_labels": fields["class_labels"],
            "arrays": {name: book.put(f"model.{name}", a) for name, a in arrays.items()}}


def load_imported_trees(f: Fields, class_names: list[str], n_features: int
                        ) -> ImportedForest:
    path = Path(f.str("path", max_length=4096))
    f.int("n_classes", len(class_names), len(class_names))
    width = f.int("n_features", n_features, n_features)
    labels = f.strings("class_labels", max_items=len(class_names))
    if any(len(label) > MAX_LABEL for label in labels):
        raise f.error("class_labels", f"a label longer than {MAX_LABEL} characters")
    a = f.object("arrays")
    arrays = {name: a.array(name, dtype, (None,), finite=True)
              for name, dtype in ENSEMBLE_ARRAYS.items()}
    a.done()
    model = ImportedForest(path, class_names, width)
    try:
        model.set_ensemble(ensemble_from_state(width, labels, arrays))
    except KilomlError as exc:
        raise f.error("arrays", exc.message) from None
    return model
