// Sizes in binary units with their IEC names (1 KiB = 1024 B), as `ls -h` and S3 consoles count.
export const formatBytes = (bytes: number | null | undefined): string => {
  if (bytes === null || bytes === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
};

// A count for a narrow cell: 950, 1.2k, 34k, 1.5M (the exact number goes in the title).
export const formatCount = (count: number): string => {
  if (count < 1000) return String(count);
  if (count < 1_000_000) return `${(count / 1000).toFixed(count < 10_000 ? 1 : 0)}k`;
  return `${(count / 1_000_000).toFixed(1)}M`;
};

// A moment in the time zone Airflow's UI shows (its selector: timezone.ts), 24-hour as Airflow
// writes it, with the zone named: "2026-12-07 16:53:05 UTC".
export const formatTime = (iso: string | null | undefined, timeZone: string): string => {
  if (!iso) return "–";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "–";
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-GB", {
      timeZone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hourCycle: "h23",
      timeZoneName: "short",
    })
      .formatToParts(date)
      .map((part) => [part.type, part.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second} ${parts.timeZoneName}`;
};

// The time of day alone, for moments of the run being watched: "16:53:05 UTC".
export const formatClock = (iso: string | null | undefined, timeZone: string): string =>
  iso ? formatTime(iso, timeZone).split(" ").slice(1).join(" ") : "–";

// end − start, for a person: "42 s", "3 min 05 s", "2 h 07 min", "1 d 3 h".
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
  retrying: "yellow",
  queued: "gray",
  skipped: "gray",
};

// The badge of a backup a restore drill found damaged: "damaged (drill 2026-12-07)".
export const damageLabel = (damagedAtIso: string | null): string =>
  damagedAtIso ? `damaged (drill ${damagedAtIso.slice(0, 10)})` : "damaged";
