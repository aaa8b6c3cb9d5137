"""Local stand-in for a Supabase project: Postgres 15 + Storage/Auth API + moto S3.

    import sandbox
    settings = sandbox.up("/tmp/sbx", size="small")   # starts (or re-uses) and returns the settings dict
    sandbox.down("/tmp/sbx", purge=True)

See sandbox/README.md. Shares no code with include/supabase_backup on purpose.
"""

from .runtime import (DEFAULT_STATE_DIR, SandboxError, connect, down, env_lines, env_vars, load_settings, stop_part,
                      status, up)
from .bulk import add_bulk_bucket, remove_bulk_bucket
from .seed import add_objects, load_objects_dir, load_users_file

__all__ = ["DEFAULT_STATE_DIR", "SandboxError", "add_bulk_bucket", "add_objects", "connect", "down", "env_lines", "env_vars",
           "load_objects_dir", "load_settings", "stop_part", "load_users_file", "remove_bulk_bucket", "status", "up"]
