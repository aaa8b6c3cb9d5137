export const formatBytes = (bytes: number | null | undefined): string => {
  if (bytes === null || bytes === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
};

export const formatTime = (iso: string | null): string =>
  iso ? new Date(iso).toLocaleString() : "–";

// finished_at − started_at, for a person: "42 s", "3 min 05 s", "2 h 07 min", "1 d 3 h".
export const formatDuration = (startIso: string | null, endIso: string | null): string => {
  if (!startIso || !endIso) return "–";
  const milliseconds = new Date(endIso).getTime() - new Date(startIso).getTime();
  if (!Number.isFinite(milliseconds) || milliseconds < 0) return "–";
  const seconds = Math.round(milliseconds / 1000);
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${String(seconds % 60).padStart(2, "0")} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ${String(minutes % 60).padStart(2, "0")} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
};

// Chakra colour palettes of the Airflow theme: each has light and dark semantic tokens, so the
// badges follow the UI's colour mode.
export const statusColour: Record<string, string> = {
  success: "green",
  incomplete: "orange",
  failed: "red",
  running: "blue",
  queued: "gray",
  skipped: "gray",
};

// The badge of a backup a restore drill found damaged: "damaged (drill 2026-12-07)".
export const damageLabel = (damagedAtIso: string | null): string =>
  damagedAtIso ? `damaged (drill ${damagedAtIso.slice(0, 10)})` : "damaged";
