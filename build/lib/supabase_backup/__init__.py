"""supabase-backup: complete, verifiable backups of a Supabase project (database, Auth, Storage)."""

__version__ = "0.1.0"
