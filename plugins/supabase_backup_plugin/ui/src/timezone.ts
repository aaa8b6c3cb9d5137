// The time zone Airflow's UI shows times in. Its selector (user menu → Timezone) keeps the choice
// in localStorage under "timezone", JSON-encoded ('"UTC"'), through usehooks-ts useLocalStorage,
// which announces a change in the same window with a "local-storage" event and other tabs get a
// "storage" event. Without a choice the UI uses the browser's zone, and so does the page.
import { useEffect, useState } from "react";

export const TIMEZONE_KEY = "timezone";

const browserTimeZone = (): string => Intl.DateTimeFormat().resolvedOptions().timeZone;

const isTimeZone = (zone: string): boolean => {
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
};

export const airflowTimeZone = (): string => {
  try {
    const stored = window.localStorage.getItem(TIMEZONE_KEY);
    const zone = stored ? JSON.parse(stored) : null;
    if (typeof zone === "string" && isTimeZone(zone)) return zone;
  } catch {
    // Unreadable storage or a value that is not JSON: the UI falls back the same way.
  }
  return browserTimeZone();
};

export const useAirflowTimeZone = (): string => {
  const [zone, setZone] = useState(airflowTimeZone);
  useEffect(() => {
    const reread = (event: Event) => {
      const key = (event as StorageEvent).key;
      if (!key || key === TIMEZONE_KEY) setZone(airflowTimeZone());
    };
    window.addEventListener("storage", reread);
    window.addEventListener("local-storage", reread);
    return () => {
      window.removeEventListener("storage", reread);
      window.removeEventListener("local-storage", reread);
    };
  }, []);
  return zone;
};
