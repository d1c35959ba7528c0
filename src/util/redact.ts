/**
 * Credentials inside URLs, hidden wherever a URL is recorded or shown: a dataset source may be a presigned S3 URL
 * (`?X-Amz-Signature=…`), carry `?token=…` or `https://user:password@host/…`, and the audit log that keeps a run's spec
 * is append-only (what is written there cannot be taken back), the dashboard shows it to every reader, and stage
 * errors travel into Temporal's history. What stays: the scheme, host, port, path and every other query parameter, so
 * a message still says which file on which server; what the fetched bytes were is the source's sha256, recorded apart.
 *
 * Text is rewritten in place (never re-serialized through `URL`), so everything but the hidden values is byte for byte
 * what was given.
 */

/** What a hidden value reads as. */
export const REDACTED = 'REDACTED';

/**
 * Query (and fragment) parameters that carry a credential, lower case: AWS SigV4 presigning, Google Cloud Storage's,
 * Azure SAS (`sig`), OAuth-style tokens and API keys. Names made of words that name a secret are hidden too
 * (SECRET_WORDS).
 */
const SECRET_PARAMS = new Set([
  'x-amz-signature',
  'x-amz-credential',
  'x-amz-security-token',
  'x-goog-signature',
  'x-goog-credential',
  'awsaccesskeyid',
  'signature',
  'sig',
  'token',
  'access_token',
  'id_token',
  'refresh_token',
  'auth',
  'authorization',
  'key',
  'apikey',
  'api_key',
  'api-key',
  'password',
  'passwd',
  'pwd',
  'secret',
  'client_secret',
]);

/**
 * Names with one of these words (`hf_token`, `githubToken`, `db-password`), or one of these pairs of words
 * (`api_key`, `accessKey`), are taken to hold a secret. Whole words: `max_tokens` and `tokenizer` are not secrets.
 */
const SECRET_WORDS = new Set(['token', 'secret', 'password', 'passwd', 'pwd', 'signature', 'sig', 'credential', 'credentials', 'apikey']);
const SECRET_PAIRS = new Set(['api key', 'access key', 'private key', 'secret key', 'auth token', 'session token']);

/** Whether a query parameter or pipeline parameter of this name holds a credential. */
export function isSecretName(name: string): boolean {
  if (SECRET_PARAMS.has(name.toLowerCase())) return true;
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
  return words.some((w, i) => SECRET_WORDS.has(w) || SECRET_PAIRS.has(`${w} ${words[i + 1]}`));
}

// scheme://[userinfo@]host…: the authority ends at the first / ? # (or the end); userinfo is what precedes its last @.
const AUTHORITY = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)/i;

/** Decodes a percent-encoded name leniently: a malformed escape leaves the name as written. */
function decodedName(name: string): string {
  try {
    return decodeURIComponent(name.replace(/\+/g, ' '));
  } catch {
    return name;
  }
}

/** `a=1&token=x` with the credentials' values hidden; `what` collects the names hidden. */
function redactParams(part: string, what: string[], where: string): string {
  return part
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      if (eq < 0) return pair;
      const name = pair.slice(0, eq);
      if (!isSecretName(decodedName(name)) || pair.slice(eq + 1) === '' || pair.slice(eq + 1) === REDACTED) return pair;
      what.push(`${where} ${decodedName(name)}`);
      return `${name}=${REDACTED}`;
    })
    .join('&');
}

/**
 * `url` with its credentials hidden: the userinfo (`user:password@`, or a token standing as the user) and the values
 * of query and fragment parameters named in SECRET_PARAMS or by SECRET_WORDS. Anything that is not `scheme://…` comes
 * back as it is. `what` collects what was hidden (`userinfo`, `query X-Amz-Signature`), for a record that says so.
 */
export function redactUrl(url: string, what: string[] = []): string {
  const m = AUTHORITY.exec(url);
  if (!m) return url;
  const [, scheme, authority] = m as unknown as [string, string, string];
  const at = authority.lastIndexOf('@');
  let out = scheme;
  if (at >= 0 && authority.slice(0, at) !== REDACTED) {
    what.push('userinfo');
    out += `${REDACTED}@${authority.slice(at + 1)}`;
  } else out += authority;
  let rest = url.slice(m[0].length);
  const hash = rest.indexOf('#');
  const fragment = hash >= 0 ? rest.slice(hash + 1) : undefined;
  if (hash >= 0) rest = rest.slice(0, hash);
  const q = rest.indexOf('?');
  if (q >= 0) rest = `${rest.slice(0, q)}?${redactParams(rest.slice(q + 1), what, 'query')}`;
  out += rest;
  if (fragment !== undefined) out += `#${redactParams(fragment, what, 'fragment')}`;
  return out;
}

// A URL inside text: scheme:// then anything up to white space, a quote or an angle bracket. Punctuation that ends a
// sentence (`… answered 403.`) is left outside by redactUrl's caller below, so it survives the rewrite.
const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`\\]+/gi;

/** `text` (a spec file, an error message) with the credentials of every URL in it hidden. */
export function redactText(text: string, what: string[] = []): string {
  if (!text.includes('://')) return text;
  return text.replace(URL_IN_TEXT, (u) => {
    const tail = /[.,;:)\]}]+$/.exec(u)?.[0] ?? '';
    return redactUrl(u.slice(0, u.length - tail.length), what) + tail;
  });
}

export interface RedactOptions {
  /** Hide the string values of keys that name a secret (isSecretName): a `--param hf_token=…`. */
  secretKeys?: boolean;
  /** Secret strings to hide wherever they appear: such a parameter's value where the plan or the file holds it. */
  values?: readonly string[];
  /** Hide the string values of secret-named keys of every object under a `params` key (a run's `--param`s), whatever their length. */
  secretParams?: boolean;
}

/** `text` with each of `values` replaced by REDACTED. */
export function redactValues(text: string, values: readonly string[] | undefined, what: string[] = []): string {
  let out = text;
  for (const v of values ?? [])
    if (out.includes(v)) {
      out = out.split(v).join(REDACTED);
      what.push('a secret parameter');
    }
  return out;
}

/**
 * A JSON value (a plan, params, an audit record's details, an API answer) with the credentials of every URL in its
 * strings hidden, and the values of keys that name a secret when `secretKeys` (a `--param` named `hf_token`). New
 * objects where something changed; `what` collects each place as `path: what` (`stages[0].with.path: query sig`).
 */
export function redactJson<T>(value: T, what: string[] = [], opts: RedactOptions = {}, path = ''): T {
  if (typeof value === 'string') {
    const found: string[] = [];
    const out = redactValues(redactText(value, found), opts.values, found);
    for (const f of found) what.push(`${path || '(value)'}: ${f}`);
    return out as T;
  }
  if (Array.isArray(value)) {
    let changed = false;
    const out = value.map((v, i) => {
      const r = redactJson(v, what, opts, `${path}[${i}]`);
      if (r !== v) changed = true;
      return r;
    });
    return (changed ? out : value) as T;
  }
  if (value && typeof value === 'object') {
    let changed = false;
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value)) {
      // Keys too: an ingest record's dataHashes are keyed `source:<url>`.
      const inKey: string[] = [];
      const k = redactText(key, inKey);
      if (k !== key) changed = true;
      const p = path ? `${path}.${k}` : k;
      for (const f of inKey) what.push(`${p} (key): ${f}`);
      let r: unknown;
      const byKey = opts.secretKeys || (opts.secretParams && /(^|\.)params$/.test(path));
      if (byKey && typeof v === 'string' && v !== '' && v !== REDACTED && isSecretName(k)) {
        what.push(`${p}: value`);
        r = REDACTED;
      } else r = redactJson(v, what, opts, p);
      if (r !== v) changed = true;
      // defineProperty: a `__proto__` key from the data stays a key (src/util/own-key.ts).
      Object.defineProperty(out, k, { value: r, enumerable: true, writable: true, configurable: true });
    }
    return (changed ? out : value) as T;
  }
  return value;
}

/** Values shorter than this are not searched for elsewhere: they would hide unrelated words. */
export const MIN_SECRET_VALUE = 6;

/**
 * For an answer read from anywhere (a run's status and plan from Temporal, old audit records): URL credentials hidden,
 * and the parameters whose names say they are secrets, under any `params` object, hidden there whatever their length,
 * and wherever else their values of MIN_SECRET_VALUE characters or more appear (the plan's stages they were
 * substituted into).
 */
export function redactSecrets<T>(value: T): T {
  const values = new Set<string>();
  const collect = (v: unknown, inParams: boolean): void => {
    if (Array.isArray(v)) for (const x of v) collect(x, false);
    else if (v && typeof v === 'object')
      for (const [k, x] of Object.entries(v)) {
        if (inParams && typeof x === 'string' && x.length >= MIN_SECRET_VALUE && x !== REDACTED && isSecretName(k)) values.add(x);
        collect(x, k === 'params');
      }
  };
  collect(value, false);
  return redactJson(value, [], { values: [...values], secretParams: true });
}
