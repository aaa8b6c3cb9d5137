"""Where archives go and come back from: S3 upload, ranged read-back and presigned links (``s3``),
the three ways a run's archive is built, uploaded and verified (``delivery``: local, streamed,
encrypted, the last through ``encrypted``), opening an archive by location, local or ``s3://``, plain
or encrypted (``location``), retention on S3 (``retention``), and the incremental repository
(``repository``: FORMAT.md version 3; not used by the DAG yet)."""
