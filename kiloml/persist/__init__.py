"""Saved state without pickle: a JSON document for the structure and an NPZ archive
(no object arrays) for the numbers, both read back with every field checked.

A run folder, a search folder or a cache may come from someone else; reading it must
never run code (which unpickling does) and a damaged or hostile file must end in one
KilomlError naming the file and the field. ``pipeline_state`` holds the Pipeline's
encoding, ``archive`` the files, ``fields`` the checked reading of a JSON object.
"""
