"""Model families: one contract (kiloml.families.base.ModelFamily) that every job walks
in the same order, whatever the model kind."""

from __future__ import annotations

from kiloml.families.base import OOF_KEY, ModelFamily, ModelInputs
from kiloml.project import LINEAR_KINDS, LoadedProject, NeuralModelConfig, TreeModelConfig

__all__ = ["OOF_KEY", "ModelFamily", "ModelInputs", "family_for"]


def family_for(project: LoadedProject) -> ModelFamily:
    """The family of the project's [model]."""
    cfg = project.config.model
    if isinstance(cfg, TreeModelConfig):
        from kiloml.families.forest import ForestFamily

        return ForestFamily(project)
    if isinstance(cfg, NeuralModelConfig):
        if cfg.kind == "imported" and cfg.path:
            from kiloml.models.onnx_trees import is_tree_ensemble_file

            if is_tree_ensemble_file(project.resolve(cfg.path)):  # a tree model after all
                from kiloml.families.imported_trees import ImportedTreesFamily

                return ImportedTreesFamily(project)
        from kiloml.families.network import NetworkFamily

        return NetworkFamily(project)
    if cfg.kind in LINEAR_KINDS:
        from kiloml.families.linear import LinearFamily

        return LinearFamily(project)
    raise TypeError(f"no model family for {type(cfg).__name__}")
