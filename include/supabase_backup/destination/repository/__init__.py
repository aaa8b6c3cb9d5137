"""The backup repository (FORMAT.md version 3): content-addressed blobs in packs, an index, and one
snapshot per run, under ``<prefix>repository/`` in the destination bucket.

``layout`` owns the keys and the files' bytes, ``writer`` adds blobs and writes a snapshot last,
``reader`` lists, restores and checks, ``parent`` decides whether an object is read again.
Nothing outside this package uses it yet: the DAG still writes the archive-mode zip.
"""
