/**
 * Model card in Markdown, generated only from what the registry recorded, so it cannot drift
 * from the facts. Output depends only on the immutable part of the version record (no clock, no
 * aliases), so a version always yields the same bytes and the card can be stored as a
 * content-addressed artifact.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../util/canonical-json.ts';
import { flattenParams } from './diff.ts';
import { productionMeasuredAgainst, productionNote } from './production.ts';
import type { ModelVersion } from './types.ts';

/** Escapes text for a Markdown table cell. */
function cell(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

function fmtMetric(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(4);
}

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

export function modelCard(v: ModelVersion): string {
  const L: string[] = [];
  // Aliases are left out on purpose: they move, and the card is stored as an immutable artifact.
  L.push(`# ${v.name} v${v.version}`, '');
  L.push('## Description', '', v.description?.trim() || '_No description was given at registration._', '');
  L.push(
    '## Intended use',
    '',
    v.intendedUse?.trim() || '_Not stated. Do not use for decisions about people without a separate review._',
    '',
  );

  L.push('## Training data', '');
  if (v.lineage.data.length === 0) L.push('_No input data was recorded._');
  else {
    L.push('| Name | Rows | SHA-256 | URI |', '|---|---:|---|---|');
    for (const d of v.lineage.data) L.push(`| ${cell(d.name)} | ${d.rows ?? ''} | \`${d.sha256}\` | ${d.uri ? cell(d.uri) : ''} |`);
  }
  L.push('');

  L.push('## Base model', '');
  if (v.lineage.baseModel) {
    // A model source's identity lists its files ({ name, sha256, bytes }): a table, not one long line of JSON.
    const { files, ...rest } = v.lineage.baseModel as Record<string, unknown>;
    const listed = Array.isArray(files) && files.every((f) => typeof f?.name === 'string' && typeof f?.sha256 === 'string');
    for (const [k, val] of Object.entries(flattenParams(listed ? rest : v.lineage.baseModel)))
      L.push(`- ${k}: \`${cell(canonicalJson(val))}\``);
    if (listed && files.length > 0) {
      L.push('', '| File | Size | SHA-256 |', '|---|---:|---|');
      for (const f of files as { name: string; sha256: string; bytes?: number }[])
        L.push(`| ${cell(f.name)} | ${typeof f.bytes === 'number' ? fmtBytes(f.bytes) : ''} | \`${cell(f.sha256)}\` |`);
    }
  } else L.push('_Trained from scratch or not recorded._');
  L.push('');

  L.push('## Hyperparameters', '');
  const params = Object.entries(flattenParams(v.params)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (params.length === 0) L.push('_None recorded._');
  else {
    L.push('| Parameter | Value |', '|---|---|');
    for (const [k, val] of params) L.push(`| ${cell(k)} | \`${cell(canonicalJson(val))}\` |`);
  }
  L.push('');

  L.push('## Metrics', '');
  const metrics = Object.entries(v.metrics);
  if (metrics.length === 0) L.push('_No metrics recorded._');
  else {
    L.push('| Metric | Value |', '|---|---:|');
    for (const [k, val] of metrics) L.push(`| ${cell(k)} | ${fmtMetric(val)} |`);
    // Which version production.* are, where the registry recorded it (versions registered before say nothing, as before).
    const note = productionMeasuredAgainst(v) !== null ? productionNote(v) : undefined;
    if (note) L.push('', `_${note}._`);
  }
  L.push('');

  L.push('## Artifacts', '', '| Role | Size | SHA-256 | URI |', '|---|---:|---|---|');
  for (const a of v.artifacts) L.push(`| ${cell(a.role)} | ${fmtBytes(a.bytes)} | \`${a.sha256}\` | ${cell(a.uri)} |`);
  L.push('');

  L.push('## Lineage', '');
  L.push(`- Pipeline spec hash: \`${v.lineage.specHash}\``);
  L.push(`- Run: \`${v.lineage.runId}\`, stage \`${v.lineage.stageId}\``);
  L.push(`- Code version: ${v.lineage.codeVersion ? `\`${v.lineage.codeVersion}\`` : '_not recorded_'}`);
  L.push(`- Registered: ${v.createdAt} by ${v.createdBy}`);
  const tags = Object.entries(v.tags);
  if (tags.length) L.push(`- Tags: ${tags.map(([k, val]) => `${k}=${val}`).join(', ')}`);
  L.push('');

  L.push('## Limitations', '');
  L.push(
    v.limitations?.trim() ||
      '_Not stated._ The metrics above were measured on the recorded evaluation data only; performance on data from a different source, time period or language is unknown.',
  );
  L.push('');
  return L.join('\n');
}

/**
 * The store name (sha256) of the card a run's register stage stored for `v` (its `outputs.card`): the registry does
 * not record it, so store gc keeps it by this, a card rendered by a tempered whose card read otherwise aside.
 */
export function modelCardSha256(v: ModelVersion): string {
  return createHash('sha256').update(modelCard(v), 'utf8').digest('hex');
}
