"""What a backup reads from a Supabase project, one exporter per source: the database
(``database``, with ``table_figures``), the Auth users (``auth_users``), Storage (``storage_listing``,
``storage_download``, ``shards`` for big buckets, ``reconcile`` against the database's inventory) and
the HTTP client they share (``api_client``). "Storage" always means Supabase's."""
