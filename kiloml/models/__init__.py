"""Classical models (trees) and their exact C emission."""
