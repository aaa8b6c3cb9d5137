"""Where archives go and come back from: S3 upload, ranged read-back and presigned links (``s3``),
the encrypted delivery (``encrypted``), opening an archive by location, local or ``s3://``, plain
or encrypted (``location``), and retention on S3 (``retention``)."""
