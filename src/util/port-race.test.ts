import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PortTaken, retryPortRace, saysPortTaken } from './port-race.ts';

describe('retryPortRace', () => {
  it('starts again after lost port races, up to the limit, and throws anything else at once', async () => {
    let starts = 0;
    assert.equal(
      await retryPortRace(async () => {
        if (++starts < 3) throw new PortTaken('taken');
        return 'up';
      }),
      'up',
    );
    assert.equal(starts, 3);

    starts = 0;
    await assert.rejects(
      retryPortRace(async () => {
        starts++;
        throw new PortTaken('always taken');
      }, 2),
      /always taken/,
    );
    assert.equal(starts, 3, 'the first start and two more');

    starts = 0;
    await assert.rejects(
      retryPortRace(async () => {
        starts++;
        throw new Error('bad config');
      }),
      /bad config/,
    );
    assert.equal(starts, 1);
  });

  it("reads a taken port from the servers' own log lines", () => {
    assert.ok(saysPortTaken('failed listening for HTTP API on 127.0.0.1:42733: listen tcp 127.0.0.1:42733: bind: address already in use'));
    assert.ok(saysPortTaken('LOG:  could not bind IPv4 address "127.0.0.1": Address already in use'));
    // SeaweedFS 4.48 checks its ports itself before binding them (seen with a listener on the port).
    assert.ok(
      saysPortTaken(
        'E1205 01:16:37.748897 mini.go:1244 Port allocation failed: port 58779 for Master (specified by flag master.port) is not available on 127.0.0.1 and cannot be used',
      ),
    );
    assert.ok(!saysPortTaken('FATAL:  could not open file "postgresql.conf": Permission denied'));
    assert.ok(!saysPortTaken('F1205 01:16:37 mini.go:80 invalid -dir: permission denied'));
  });
});
