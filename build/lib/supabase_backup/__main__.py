"""``python -m supabase_backup`` is the ``supabase-backup`` command."""

import sys

from supabase_backup.cli import main

if __name__ == "__main__":
    sys.exit(main())
