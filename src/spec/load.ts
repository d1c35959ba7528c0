/**
 * Entry points: read a pipeline file, parse, validate and plan it. User mistakes (including a
 * missing or unreadable file) come back as SpecErrors; nothing here throws for them.
 */
import { readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { decodeSource } from './decode.ts';
import { parseSource } from './parse.ts';
import { planPipeline } from './plan.ts';
import type { KindRegistry, PipelineSpec, PlannedPipeline, SpecError } from './types.ts';
import { validateParsed } from './validate.ts';

export interface LoadSpecOptions extends KindRegistry {
  /** `--param` values as text (see parseParamOverrides); parsed by each parameter's declared type. */
  paramOverrides?: Record<string, string>;
  /** Folder relative paths resolve against (default for files: the file's folder); enables checks of local paths. */
  baseDir?: string;
}

/** `text`: the file's text as read and planned (the audit trail keeps it beside the plan's hash). */
export type LoadSpecResult = { ok: true; spec: PipelineSpec; plan: PlannedPipeline; text: string } | { ok: false; errors: SpecError[] };
export type CheckSpecResult = { ok: true; spec: PipelineSpec } | { ok: false; errors: SpecError[] };

/**
 * The largest pipeline file taken. A run's workflow input carries the plan and the file's text (which the audit trail
 * keeps), and Temporal refuses an input over its blob limit (2 MB by default) with an error that names neither the file
 * nor what to do. A pipeline is a few KB: 512 KiB leaves room for both copies, and a wrong file (a dataset given by
 * mistake) is refused before it is read whole.
 */
export const MAX_SPEC_BYTES = 512 * 1024;

function tooLarge(file: string, bytes: number): SpecError {
  return {
    file,
    line: 0,
    column: 0,
    path: '',
    code: 'file-too-large',
    message: `the file is ${bytes.toLocaleString('en-US')} bytes; a pipeline file may have at most ${MAX_SPEC_BYTES.toLocaleString('en-US')}`,
    hint: 'check that this is the pipeline file: a pipeline is a few KB, and the rows it trains on belong in an ingest source, not in the file',
  };
}

export async function loadSpec(filePath: string, opts: LoadSpecOptions): Promise<LoadSpecResult> {
  const text = await readSource(filePath);
  return typeof text === 'string'
    ? loadSpecText(text, filePath, { baseDir: dirname(resolve(filePath)), ...opts })
    : { ok: false, errors: [text] };
}

/** Same as loadSpec for text already in memory; `file` is only used in error messages. */
export function loadSpecText(text: string, file: string, opts: LoadSpecOptions): LoadSpecResult {
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_SPEC_BYTES) return { ok: false, errors: [tooLarge(file, bytes)] };
  const parsed = parseSource(text, file);
  if (!parsed.ok) return parsed;
  const v = validateParsed(parsed.parsed, { ...opts, requireParams: true });
  if (!v.ok) return v;
  return { ok: true, spec: v.spec, plan: planPipeline(v.spec, v.params), text };
}

/** Validates a file without planning it: parameters without a default need not be given. */
export async function checkSpec(filePath: string, opts: LoadSpecOptions): Promise<CheckSpecResult> {
  const text = await readSource(filePath);
  return typeof text === 'string'
    ? checkSpecText(text, filePath, { baseDir: dirname(resolve(filePath)), ...opts })
    : { ok: false, errors: [text] };
}

export function checkSpecText(text: string, file: string, opts: LoadSpecOptions): CheckSpecResult {
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_SPEC_BYTES) return { ok: false, errors: [tooLarge(file, bytes)] };
  const parsed = parseSource(text, file);
  if (!parsed.ok) return parsed;
  const v = validateParsed(parsed.parsed, { ...opts, requireParams: false });
  return v.ok ? { ok: true, spec: v.spec } : v;
}

async function readSource(filePath: string): Promise<string | SpecError> {
  try {
    // A regular file's size is known before reading it; a pipe's is checked on its text (loadSpecText).
    const { size } = await stat(filePath);
    if (size > MAX_SPEC_BYTES) return tooLarge(filePath, size);
    const decoded = decodeSource(await readFile(filePath), filePath);
    return decoded.ok ? decoded.text : decoded.error;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      return {
        file: filePath,
        line: 0,
        column: 0,
        path: '',
        code: 'file-not-found',
        message: 'no such file',
        hint: 'check the path; pipeline files usually live under pipelines/',
      };
    if (code === 'EISDIR')
      return {
        file: filePath,
        line: 0,
        column: 0,
        path: '',
        code: 'file-unreadable',
        message: 'is a directory, not a pipeline file',
        hint: 'give the path of a .yaml or .json file',
      };
    return {
      file: filePath,
      line: 0,
      column: 0,
      path: '',
      code: 'file-unreadable',
      message: `cannot read the file: ${(e as Error).message}`,
      hint: 'check its permissions',
    };
  }
}
