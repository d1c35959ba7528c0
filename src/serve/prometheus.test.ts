import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Gauge, Histogram, MetricsRegistry } from './prometheus.ts';

test('renders counters, gauges and cumulative histograms in text format', () => {
  const reg = new MetricsRegistry();
  const c = reg.add(new Counter('req_total', 'Requests.'));
  const h = reg.add(new Histogram('lat_seconds', 'Latency.', [0.1, 1]));
  reg.add(new Gauge('info', 'Info.', () => [{ labels: { model: 'a"b\\c\nd' }, value: 1 }]));
  reg.add(new Counter('swaps_total', 'Swaps.', true));
  c.inc({ status: '200', route: '/p' });
  c.inc({ route: '/p', status: '200' }, 2);
  c.inc({ route: '/p', status: '500' });
  for (const v of [0.05, 0.5, 0.5, 3]) h.observe({ route: '/p' }, v);
  assert.equal(c.get({ status: '200', route: '/p' }), 3);
  assert.equal(
    reg.render(),
    [
      '# HELP req_total Requests.',
      '# TYPE req_total counter',
      'req_total{route="/p",status="200"} 3',
      'req_total{route="/p",status="500"} 1',
      '# HELP lat_seconds Latency.',
      '# TYPE lat_seconds histogram',
      'lat_seconds_bucket{le="0.1",route="/p"} 1',
      'lat_seconds_bucket{le="1",route="/p"} 3',
      'lat_seconds_bucket{le="+Inf",route="/p"} 4',
      'lat_seconds_sum{route="/p"} 4.05',
      'lat_seconds_count{route="/p"} 4',
      '# HELP info Info.',
      '# TYPE info gauge',
      'info{model="a\\"b\\\\c\\nd"} 1',
      '# HELP swaps_total Swaps.',
      '# TYPE swaps_total counter',
      'swaps_total 0',
      '',
    ].join('\n'),
  );
});

test("a counter's series handle adds to the same series as inc, seen by the next render", () => {
  const c = new Counter('tokens_total', 'Tokens.');
  const s = c.series({ model: 'm@1' });
  s.inc();
  s.inc(4);
  c.inc({ model: 'm@1' }, 2);
  assert.equal(c.get({ model: 'm@1' }), 7);
  assert.deepEqual(c.render().slice(2), ['tokens_total{model="m@1"} 7']);
});
