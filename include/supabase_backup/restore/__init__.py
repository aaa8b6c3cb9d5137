"""Restoring an archive: reading it safely (``archive``), the database into an empty Postgres
(``database``) or a fresh Supabase project (``supabase``), the objects into a Storage API
(``storage``), and the restore drill (``drill``)."""
