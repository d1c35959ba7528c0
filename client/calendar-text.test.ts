/**
 * calendarCron and specCron: a schedule's cron text written back from the calendar Temporal compiles it into (what a
 * process without TEMPERED_PAYLOAD_KEY can read of its timing). The calendars are as the dev server stores them for
 * each cron string (DescribeSchedule of `0 3 * * *` and the rest: an omitted `end` is `start`, an omitted `start` 0).
 * The end-to-end read is in tests/payload-encryption.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { calendarCron, specCron } from './calendar-text.ts';

const every = { second: [{ step: 1 }], dayOfMonth: [{ start: 1, end: 31, step: 1 }], month: [{ start: 1, end: 12, step: 1 }] };
const anyWeekday = [{ end: 6, step: 1 }];

test('cron text from the calendar Temporal keeps', () => {
  assert.equal(
    calendarCron({ ...every, minute: [{ step: 1 }], hour: [{ start: 3, end: 3, step: 1 }], dayOfWeek: anyWeekday }),
    '0 3 * * *',
  );
  assert.equal(
    calendarCron({
      ...every,
      minute: [{ start: 0, end: 59, step: 15 }],
      hour: [{ start: 9, end: 17, step: 1 }],
      dayOfWeek: [{ start: 1, end: 5, step: 1 }],
    }),
    '*/15 9-17 * * 1-5',
  );
  assert.equal(
    calendarCron({
      ...every,
      minute: [{ start: 30, step: 1 }],
      hour: [
        { start: 2, step: 1 },
        { start: 14, step: 1 },
      ],
      dayOfWeek: anyWeekday,
    }),
    '30 2,14 * * *',
  );
  // A calendar with a year is not one a cron string gives.
  assert.equal(calendarCron({ ...every, year: [{ start: 2027 }] }), undefined);
  assert.equal(
    specCron({
      timezoneName: 'Europe/Paris',
      structuredCalendar: [{ ...every, minute: [{}], hour: [{ start: 3 }], dayOfWeek: anyWeekday }],
    }),
    'CRON_TZ=Europe/Paris 0 3 * * *',
  );
  assert.equal(specCron({ cronString: ['@daily'] }), '@daily');
  assert.equal(specCron({}), undefined);
});
