"""The model registry (docs/registry.md): released, content-addressed packages of a run,
gate results, and the production / canary / previous aliases.

Nothing is imported here: `import kiloml.registry.store` and the others load only what
they need."""
