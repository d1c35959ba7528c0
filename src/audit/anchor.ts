/**
 * Anchors for the audit chain kept outside its database. The chain alone shows that stored records
 * were not edited; it cannot show that records were cut from the end, that the log was wiped, or
 * that it was rewritten wholesale, because whoever can write the file can also recompute every hash.
 * An anchor, the seq and hash of the head at some moment, stored elsewhere, pins the history up
 * to that record. Signed with an HMAC key the database never sees (TEMPERED_AUDIT_KEY), an
 * exported anchor also cannot be forged by someone who can write the database but not read the key.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { InputError } from '../errors.ts';
import { canonicalJson } from '../util/canonical-json.ts';
import type { AuditAnchor } from './log.ts';

export interface SignedAnchor extends AuditAnchor {
  /** When the anchor was exported (ISO time). */
  time: string;
  /** HMAC-SHA256 (hex) over the canonical JSON of { seq, hash, time }. */
  mac: string;
}

const HEX64 = /^[0-9a-f]{64}$/;
export const AUDIT_KEY_ENV = 'TEMPERED_AUDIT_KEY';

function mac(a: { seq: number; hash: string; time: string }, key: string): string {
  return createHmac('sha256', key)
    .update(canonicalJson({ seq: a.seq, hash: a.hash, time: a.time }))
    .digest('hex');
}

export function auditKey(env: Record<string, string | undefined> = process.env): string {
  const key = env[AUDIT_KEY_ENV];
  if (!key || key.length < 16) {
    throw new InputError(`${AUDIT_KEY_ENV} must be set to a secret of at least 16 characters`, {
      where: AUDIT_KEY_ENV,
      hint: 'keep it outside the state folder (a secret store); the same key verifies exported heads later',
    });
  }
  return key;
}

export function signAnchor(anchor: AuditAnchor, key: string, now: Date = new Date()): SignedAnchor {
  const a = { seq: anchor.seq, hash: anchor.hash, time: now.toISOString() };
  return { ...a, mac: mac(a, key) };
}

/** `seq:hash`, a bare hash (its seq looked up by the caller), or a signed anchor's JSON. */
export function parseAnchorText(text: string, key: string | undefined, where: string): AuditAnchor | { hash: string } {
  const t = text.trim();
  const m = /^(\d+):([0-9a-f]{64})$/.exec(t);
  if (m) return { seq: Number(m[1]), hash: m[2]! };
  if (HEX64.test(t)) return { hash: t };
  if (t.startsWith('{')) return verifySignedAnchor(t, key, where);
  throw new InputError('not an audit anchor', {
    where,
    hint: 'pass seq:hash (from `tempered audit --head`), the head hash, or a file written by `tempered audit --export-head`',
  });
}

/** Checks a signed anchor's MAC; any mismatch, a missing key or a malformed anchor is an InputError. */
export function verifySignedAnchor(json: string, key: string | undefined, where: string): AuditAnchor {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    throw new InputError('the signed anchor is not JSON', { where });
  }
  const a = v as Partial<SignedAnchor>;
  if (
    !a ||
    typeof a !== 'object' ||
    !Number.isSafeInteger(a.seq) ||
    (a.seq as number) < 1 ||
    typeof a.hash !== 'string' ||
    !HEX64.test(a.hash) ||
    typeof a.time !== 'string' ||
    typeof a.mac !== 'string' ||
    !HEX64.test(a.mac)
  ) {
    throw new InputError('a signed anchor needs seq, hash, time and mac', { where });
  }
  if (key === undefined) throw new InputError(`a signed anchor needs ${AUDIT_KEY_ENV} to check its signature`, { where });
  const want = Buffer.from(mac({ seq: a.seq!, hash: a.hash, time: a.time }, key), 'hex');
  if (!timingSafeEqual(want, Buffer.from(a.mac, 'hex'))) {
    throw new InputError("the anchor's signature does not match: it was altered, or signed with another key", {
      where,
      hint: `check ${AUDIT_KEY_ENV}`,
    });
  }
  return { seq: a.seq!, hash: a.hash };
}
