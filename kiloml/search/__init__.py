"""kiloml search: hardware-aware search over a Pareto front."""
