/** Stage kind `ingest`: source files → Arrow table + quarantine table + data report. */
import { join } from 'node:path';
import type { IngestConfig } from '../data/config.ts';
import { sha256Handle } from '../util/hash-file.ts';
import { forEachInFlight } from '../util/in-flight.ts';
import { ingestWithSchema } from '../data/schemas.ts';
import { resolveSources } from '../data/sources.ts';
import { dataRoots, openConfined, realRoots } from '../data/roots.ts';
import { isUrl, urlPin } from '../data/download.ts';
import { redactUrl } from '../util/redact.ts';
import { MEDIA } from '../types.ts';
import { checkIngestConfig, checkPromptTemplate, ConfigError } from '../data/ingest-config.ts';
import { hasRefs } from '../spec/runtime-refs.ts';
import { issuesFrom } from './checks.ts';
import type { IngestReport } from '../data/report.ts';
import type { ArtifactRef } from '../types.ts';
import type { StageAudit, StageKind } from './types.ts';
import type { PlannedPipeline } from '../spec/types.ts';
import { InputError } from '../errors.ts';

// The library (Arrow, onnxruntime, …) loads when the stage runs, not when `validate` reads the kind's contract.
const lib = async () => ({ ...(await import('../data/arrow-io.ts')), ...(await import('../data/ingest.ts')) });

/** Source files hashed at once for the cache key. */
const HASHED_AT_ONCE = 8;

export const ingestStage: StageKind<IngestConfig> = {
  kind: 'ingest',
  description: 'read JSONL, CSV/TSV, Parquet or Arrow files into an Arrow table with provenance; bad rows fail or go to quarantine',
  // 2: an instruction table records its promptTemplate on the prompt column (other tables are byte for byte as in 1).
  // 3: the same files read otherwise (7 Dec): a JSONL row naming a read field twice is a bad row and a line that begins
  // with a byte-order mark is read; an archive, a gzip bomb padded with zeros and a Parquet/Arrow schema naming a read
  // column twice fail; a cut-short last line's quarantine detail and the label-holds-text warning are new. A cached 2
  // kept the old result of such input; clean data's table, quarantine and report are byte for byte as in 2, so what is
  // downstream of them still hits (the demo pipelines: their ingest keys alone change).
  // 4: the same files read otherwise (7 Dec, later): a walk goes into links to folders (their files are rows now; a link
  // that leads round, or to a folder outside the roots, is a report warning, in name order), a JSONL label past 2^53 is read exactly (two classes where JSON.parse made
  // one), a chat message naming a key twice is a duplicate-field bad row. A cached 3 kept the old result of such input;
  // the demo pipelines' tables, quarantines and reports are byte for byte as in 3.
  // 5: the report and quarantine say more of the same rows (8 Dec): one number written two ways ("1", "1.0") is a
  // warning of its own, an unknown-label row whose label is a declared one written differently says so (its detail)
  // and is a report warning, a null text is "is null". Tables are byte for byte as in 4; a cached 4 kept a report
  // without those warnings, and the quarantine's old details.
  // 6: the review of 5 (8 Dec): labels with leading zeros ("01" beside "1") are no longer warned of as one number, and
  // a promptTemplate field that is null says "is null" (its quarantine detail, the error's hint). Tables as in 5.
  // 7: labels in two Unicode normal forms ("café" as U+00E9 or e + U+0301) are a report warning, and an unknown-label
  // row that is a declared label in another normal form says so, escaped; the number-forms warning no longer repeats a
  // spelling that differs in spaces alone (f66b86f). Tables as in 6.
  codeVersion: 'ingest-7',
  withSchema: ingestWithSchema,
  outputs: {
    table: { type: 'table', description: 'the ingested rows (task columns + _source, _row, _hash)' },
    quarantine: { type: 'table', description: 'rejected rows with reason codes' },
    report: { type: 'json', description: 'rows in/out, bad rows by reason, labels, source hashes' },
    dataHash: { type: 'string', description: 'sha256 over the source files: identifies the raw data' },
    rows: { type: 'number' },
  },
  check(cfg) {
    // A value known only at run time is checked then; a literal promptTemplate's syntax is checked now regardless.
    if (!hasRefs(cfg)) return issuesFrom(checkIngestConfig(cfg as unknown as IngestConfig));
    const t =
      cfg.task === 'instruction' && typeof cfg.promptTemplate === 'string' && !hasRefs(cfg.promptTemplate) ? cfg.promptTemplate : undefined;
    const e = t === undefined ? undefined : checkPromptTemplate(t);
    return e instanceof ConfigError ? issuesFrom([e]) : [];
  },
  async externalInputs(cfg, { baseDir, stateDir }) {
    // A URL source is identified by the hash it is pinned to: the download is checked against it. Named as the
    // report names what was read (without credentials: inputsRead below), so the key after the run is the looked-up one.
    if (isUrl(cfg.path)) return [`${redactUrl(cfg.path)}:${urlPin(cfg.sha256)}`];
    const roots = dataRoots(baseDir, { stateDir });
    const files = await resolveSources(cfg.path, baseDir, { format: cfg.format, roots });
    const confineTo = realRoots(roots);
    // A few at a time: all at once held a descriptor (and two 1 MiB buffers) per file, so a folder of more files than
    // the open-file limit (1024 by default) failed every lookup with EMFILE.
    const inputs: string[] = new Array<string>(files.length);
    await forEachInFlight(files.keys(), HASHED_AT_ONCE, async (i) => {
      // Opened confined, as the run opens it (openConfined): a file swapped for a link that leads out, or a named pipe,
      // after the listing was read (or waited on) by name here, before the run refused it.
      const f = files[i]!;
      const fh = await openConfined({ abs: f.abs, shown: f.display, listed: cfg.path }, confineTo, 'path');
      try {
        inputs[i] = `${f.display}:${(await sha256Handle(fh)).sha256}`;
      } finally {
        await fh.close();
      }
    });
    return inputs;
  },
  async run(cfg, ctx) {
    const { describeArrowFile, ingest } = await lib();
    const outPath = join(ctx.workDir, 'table.arrow');
    const quarantinePath = join(ctx.workDir, 'quarantine.arrow');
    const report = await ingest(cfg, {
      baseDir: ctx.baseDir,
      roots: dataRoots(ctx.baseDir, { stateDir: ctx.stateDir }),
      signal: ctx.signal,
      outPath,
      quarantinePath,
      onProgress: (p) => ctx.progress({ fraction: p.fraction, message: `${p.rows} rows read`, metrics: { rows: p.rows } }),
    });
    ctx.inputsRead?.(report.sourceFiles.map((f) => `${f.path}:${f.sha256}`));
    const q = await describeArrowFile(quarantinePath);
    const table = await ctx.store.putFile(outPath, { mediaType: MEDIA.arrow, rows: report.rowsOut, schema: report.schema, move: true });
    const quarantine = await ctx.store.putFile(quarantinePath, { mediaType: MEDIA.arrow, rows: q.rows, schema: q.schema, move: true });
    return { table, quarantine, report: await ctx.store.putJson(report), dataHash: report.dataHash, rows: report.rowsOut };
  },
  // "On which data": the record names the raw files, not only the Arrow table made of them. Read
  // from the report the stage stored, which hashed each file from the very bytes it parsed.
  async audit(_cfg, outputs, { store }) {
    return sourceFilesAudit(await store.readJson<IngestReport>(outputs.report as ArtifactRef));
  },
};

/** Source files an ingest record lists; beyond this the report (`out:report`, by its hash) lists the rest. */
export const AUDIT_SOURCE_FILES = 1000;

/**
 * The source files of an ingest report as its audit record carries them: `source:<path>` → sha256
 * in dataHashes, and each file's path, sha256 and size in `details.sources`, with `dataHash` (over
 * every file's hash, in order). A folder of more than AUDIT_SOURCE_FILES files lists the first of them
 * and says how many there were: every one is in the report, whose hash the record holds.
 */
export function sourceFilesAudit(report: Pick<IngestReport, 'sourceFiles' | 'dataHash'>): StageAudit {
  const listed = report.sourceFiles.slice(0, AUDIT_SOURCE_FILES).map((f) => ({ path: f.path, sha256: f.sha256, bytes: f.bytes }));
  return {
    dataHashes: Object.fromEntries(listed.map((f) => [`source:${f.path}`, f.sha256])),
    details: {
      sources: listed,
      ...(listed.length < report.sourceFiles.length ? { sourceFiles: report.sourceFiles.length } : {}),
      dataHash: report.dataHash,
    },
  };
}

/** An ingest stage whose local source is not there when the run is submitted. */
export interface MissingSource {
  stage: string;
  /** No stage runs before it, so nothing in the run can write the file first. */
  first: boolean;
  message: string;
}

/**
 * The plan's ingest stages whose literal local `path` (no parameters left, not a URL) matches nothing
 * on this machine, resolved as the stage will resolve it. Found at submit time, not by validate: a
 * schedule may be created before its first data drop, and a worker elsewhere may see a path this
 * machine does not.
 */
export async function missingSources(plan: PlannedPipeline, baseDir: string, stateDir?: string): Promise<MissingSource[]> {
  const out: MissingSource[] = [];
  for (const st of plan.stages) {
    if (st.uses !== 'ingest') continue;
    const { path, format } = st.with as { path?: unknown; format?: IngestConfig['format'] };
    if (typeof path !== 'string' || hasRefs(path) || isUrl(path)) continue;
    try {
      await resolveSources(path, baseDir, { format, roots: dataRoots(baseDir, { stateDir }), sayMissingOutside: true });
    } catch (e) {
      if (e instanceof InputError && e.code === 'source-missing') {
        out.push({ stage: st.id, first: st.needs.length === 0, message: e.bareMessage });
      }
    }
  }
  return out;
}

export function stageKinds(): StageKind<any>[] {
  return [ingestStage];
}
