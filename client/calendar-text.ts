/**
 * A schedule's timing as cron text, read back from what Temporal keeps of it: the server compiles a cron string into
 * a structured calendar (each field a list of ranges), and that is in clear, while tempered's own copy of the text
 * as written travels in the action's memo, which TEMPERED_PAYLOAD_KEY encrypts. So a process without the key still
 * says when a schedule fires.
 */
import type { temporal } from '@temporalio/proto';

type Range = temporal.api.schedule.v1.IRange;
type Calendar = temporal.api.schedule.v1.IStructuredCalendarSpec;

/** A calendar field's bounds, for writing the whole of it as `*`. */
const FIELDS = [
  ['minute', 0, 59],
  ['hour', 0, 23],
  ['dayOfMonth', 1, 31],
  ['month', 1, 12],
  ['dayOfWeek', 0, 6],
] as const;

/** One range as cron writes it: Temporal's `end` defaults to `start` (one value), `step` to 1. */
function rangeText(r: Range, lo: number, hi: number): string {
  const start = r.start ?? 0;
  const end = Math.max(r.end ?? start, start);
  const step = r.step && r.step > 1 ? `/${r.step}` : '';
  if (start === lo && end === hi) return `*${step}`;
  return start === end ? String(start) : `${start}-${end}${step}`;
}

/**
 * `0 3 * * *` for the calendar Temporal compiled from that cron string; a seconds field other than 0 goes first, as
 * Temporal's own 6-field cron reads it. Undefined for a calendar with a year or comment (not one tempered writes).
 */
export function calendarCron(c: Calendar): string | undefined {
  if (c.year?.length) return undefined;
  const fields = FIELDS.map(([name, lo, hi]) => {
    const ranges = c[name];
    return ranges?.length ? ranges.map((r) => rangeText(r, lo, hi)).join(',') : '*';
  });
  const seconds = c.second?.length ? c.second.map((r) => rangeText(r, 0, 59)).join(',') : '0';
  return (seconds === '0' ? fields : [seconds, ...fields]).join(' ');
}

/** The cron text of a schedule's spec as DescribeSchedule returns it, its time zone in front as cron writes one. */
export function specCron(spec: temporal.api.schedule.v1.IScheduleSpec | null | undefined): string | undefined {
  const zone = spec?.timezoneName ? `CRON_TZ=${spec.timezoneName} ` : '';
  const text = spec?.cronString?.[0] ?? (spec?.structuredCalendar?.length === 1 ? calendarCron(spec.structuredCalendar[0]!) : undefined);
  return text === undefined ? undefined : `${zone}${text}`;
}
