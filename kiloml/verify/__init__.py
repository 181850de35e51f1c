"""Build the generated library, run it, and compare it with the Python reference."""
