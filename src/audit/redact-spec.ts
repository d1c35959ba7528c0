/**
 * What a `run.submitted` record keeps of a spec with credentials in it. The audit log is append-only and hash-chained
 * (a secret written there cannot be removed) and the dashboard shows a run's spec to every reader, so the record keeps
 * the file's text, the resolved plan and the params with the credentials of URLs hidden (src/util/redact.ts), and the
 * values of parameters whose names say they are secrets (`hf_token`, `api_key`) wherever they appear. What stays for
 * an auditor: the original file's sha256 (`spec.sha256`, as before), the kept text's own (`spec.keptSha256`), and
 * `redacted`, the places that differ; the run's spec hash is still the hash of the plan it ran. Reproducing such a run
 * needs the credentials back (the workflow's own input, in Temporal's history, still has them: the worker needs them).
 */
import { sha256Hex } from '../util/canonical-json.ts';
import { isSecretName, MIN_SECRET_VALUE, redactJson, redactText, redactValues, REDACTED } from '../util/redact.ts';

export interface KeptSpec<P> {
  plan: P;
  params: Record<string, unknown>;
  /** `sha256`: of the file as submitted; `keptSha256`: of `text`, where credentials were hidden in it. */
  spec?: { text: string; sha256: string; keptSha256?: string };
  /** Where something was hidden (`stages[0].with.path: query X-Amz-Signature`); absent when nothing was. */
  redacted?: string[];
}

/** The values of secret-named params (`hf_token`), long enough to be hidden wherever else they appear. */
function secretValues(params: Record<string, unknown>): string[] {
  return Object.entries(params)
    .filter(([k, v]) => isSecretName(k) && typeof v === 'string' && v.length >= MIN_SECRET_VALUE && v !== REDACTED)
    .map(([, v]) => v as string);
}

export function keptSpec<P extends { params?: Record<string, unknown> }>(plan: P, text: string | undefined): KeptSpec<P> {
  const params = plan.params ?? {};
  const values = secretValues(params);
  const opts = { secretKeys: true, values };
  const what: string[] = [];
  const keptPlan = redactJson(plan, what, opts);
  const keptParams = redactJson(params, [], opts);
  let spec: KeptSpec<P>['spec'];
  if (text !== undefined) {
    const inText: string[] = [];
    const kept = redactValues(redactText(text, inText), values, inText);
    spec = { text: kept, sha256: sha256Hex(text), ...(kept !== text ? { keptSha256: sha256Hex(kept) } : {}) };
    // A credential only the file holds (a parameter's default the run did not use): said as the text's.
    if (kept !== text && !what.length) what.push(...inText.map((w) => `spec text: ${w}`));
  }
  return { plan: keptPlan, params: keptParams, ...(spec ? { spec } : {}), ...(what.length ? { redacted: [...new Set(what)] } : {}) };
}

/**
 * A schedule record's details (its command's flags as given) as the trail keeps them: URL credentials hidden, and the
 * value of each `--param name=value` whose name says it is a secret. Such a schedule's runs then cannot be planned again
 * from the trail alone (`models show --spec` says the file no longer plans to the spec hash); its file in the store can.
 */
export function keptScheduleDetails(details: Record<string, unknown>): Record<string, unknown> {
  const out = redactJson(details);
  const param = out.param;
  if (!Array.isArray(param)) return out;
  return { ...out, param: keptParamArgs(param) };
}

/**
 * `--param name=value` flags as others may see them: URL credentials hidden, and the value of each param whose name
 * says it is a secret (the trail's schedule records, the dashboard's view of a schedule).
 */
export function keptParamArgs<T>(params: readonly T[]): T[] {
  return redactJson(params).map((p) => {
    if (typeof p !== 'string') return p;
    const eq = p.indexOf('=');
    return (eq > 0 && isSecretName(p.slice(0, eq)) && p.slice(eq + 1) !== '' ? `${p.slice(0, eq)}=${REDACTED}` : p) as T;
  });
}

/**
 * Where a spec's text, shown to others (the dashboard passes every answer through redactSecrets), has credentials
 * hidden that its record kept: a record from before the trail hid them, or a schedule's file in the store. Said as
 * keptSpec says it (`spec text: query X-Amz-Signature`), so a reader knows the text is not the file whose sha256 is
 * shown beside it; empty where nothing is hidden.
 */
export function hiddenInText(text: string, params: Record<string, unknown> = {}): string[] {
  const what: string[] = [];
  redactValues(redactText(text, what), secretValues(params), what);
  return [...new Set(what)].map((w) => `spec text: ${w}`);
}
