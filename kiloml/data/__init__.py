"""Recordings, ingest, public data sets, windowing and leak-free splits."""
