"""What the product writes into the Supabase project's own database: ``backup_history`` and the
download log (``history``), the enabled switch (``enabled``), the staleness alerts' open episode
(``alert_state``) and the check that the migration was applied (``migrations``)."""
