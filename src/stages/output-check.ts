/**
 * A stage's outputs against its kind's declaration, before they are cached or handed downstream. A
 * kind that returns a string where it declares a number, or a reference to nothing stored, used to
 * succeed, be cached, and fail a later stage (or a later run, from the cache) with an error about
 * that stage. Built-in kinds are held to the same contract; plugin kinds are why it exists.
 * A declared output may be absent: some are produced only for some configs (evaluate's f1_macro).
 */
import { IntegrityError, StageContractError } from '../errors.ts';
import type { StageKindInfo } from '../spec/types.ts';
import type { ArtifactStore } from '../store/artifact-store.ts';
import { isArtifactRef, MEDIA, type ArtifactRef } from '../types.ts';

const HEX64 = /^[0-9a-f]{64}$/;

/** Throws a StageContractError naming every output that breaks the declaration. */
export async function checkStageOutputs(
  kind: Pick<StageKindInfo, 'kind' | 'outputs'>,
  outputs: unknown,
  store: ArtifactStore,
): Promise<void> {
  const problems = await outputProblems(kind, outputs, store);
  if (problems.length === 0) return;
  throw new StageContractError(`stage kind '${kind.kind}' returned outputs its declaration does not allow: ${problems.join('; ')}`, {
    hint: `fix the kind's run() or its outputs; a retry would return the same, so the stage is not retried and nothing was cached`,
  });
}

export async function outputProblems(kind: Pick<StageKindInfo, 'outputs'>, outputs: unknown, store: ArtifactStore): Promise<string[]> {
  if (typeof outputs !== 'object' || outputs === null || Array.isArray(outputs))
    return [`run() returned ${outputs === null ? 'null' : Array.isArray(outputs) ? 'an array' : typeof outputs}, not an object of outputs`];
  const problems: string[] = [];
  const declared = Object.keys(kind.outputs);
  for (const [name, value] of Object.entries(outputs)) {
    if (value === undefined) continue;
    const decl = Object.prototype.hasOwnProperty.call(kind.outputs, name) ? kind.outputs[name] : undefined;
    if (!decl) {
      problems.push(`'${name}' is not a declared output (declared: ${declared.join(', ') || 'none'})`);
      continue;
    }
    const problem = await valueProblem(decl.type, value, store);
    if (problem) problems.push(`'${name}' (${decl.type}) ${problem}`);
  }
  return problems;
}

async function valueProblem(type: string, value: unknown, store: ArtifactStore): Promise<string | undefined> {
  switch (type) {
    case 'number':
      // NaN and ±Infinity cross a child process's JSON channel as null (a diverged training's finalLoss).
      return typeof value === 'number' || value === null ? undefined : `is ${show(value)}`;
    case 'string':
    case 'boolean':
      return typeof value === type ? undefined : `is ${show(value)}`;
    case 'json':
      // A json output is a stored document or a small value held inline (train's baseModel), which may
      // itself hold a uri and a sha256 (a source file's): only an artifact:// uri is a store reference.
      return isStoreRef(value) ? refProblem(value, store) : undefined;
    case 'table':
    case 'artifact': {
      if (!isStoreRef(value)) return `is ${show(value)}, not an artifact reference from ctx.store (putFile, putJson, putTree)`;
      const problem = await refProblem(value, store);
      if (problem) return problem;
      if (type !== 'table') return undefined;
      if (value.mediaType !== MEDIA.arrow)
        return `has media type ${JSON.stringify(value.mediaType)}; a table is an Arrow IPC file stored with mediaType '${MEDIA.arrow}'`;
      // Labelled Arrow is not yet Arrow: the next stage would fail on it, attempt after attempt, and every run
      // after from the cache. Its schema is enough to tell (the batches are not read).
      try {
        // Loaded here, not at the top: train's kind imports this module, and `tempered validate` loads no Arrow.
        const { readArrowSchema } = await import('../data/arrow-io.ts');
        await readArrowSchema(store.pathOf(value));
        return undefined;
      } catch (e) {
        return `is not an Arrow IPC table (${(e as Error).message})`;
      }
    }
    default:
      return undefined;
  }
}

function isStoreRef(v: unknown): v is ArtifactRef {
  return isArtifactRef(v) && v.uri.startsWith('artifact://');
}

async function refProblem(ref: ArtifactRef, store: ArtifactStore): Promise<string | undefined> {
  if (!HEX64.test(ref.sha256) || ref.uri !== `artifact://sha256/${ref.sha256}`)
    return `is not a reference the store made (${JSON.stringify(ref.uri)})`;
  if (store.has(ref.sha256)) return undefined;
  // Passed through from upstream without being read here: the shared store may hold it where this worker's
  // folder does not. Only a missing or damaged object is the kind's fault; a store that does not answer is
  // thrown, and the stage retried.
  try {
    await store.verify(ref);
    return undefined;
  } catch (e) {
    if (e instanceof IntegrityError) return `refers to ${ref.sha256.slice(0, 12)}…, which is not in the store (${e.message})`;
    throw e;
  }
}

function show(v: unknown): string {
  if (v === null) return 'null';
  const s = JSON.stringify(v);
  return `${Array.isArray(v) ? 'an array' : typeof v} ${s === undefined ? '' : s.length > 60 ? `${s.slice(0, 59)}…` : s}`.trim();
}
