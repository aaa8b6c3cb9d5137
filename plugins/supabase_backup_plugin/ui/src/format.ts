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

export const statusColour: Record<string, string> = {
  success: "green",
  failed: "red",
  running: "blue",
  skipped: "gray",
};
