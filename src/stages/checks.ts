/** Checks several stage kinds share (see StageKindInfo.check). */
import { missingLocalModel, MODEL_SOURCE_FORMS, parseModelSource } from '../models/source-spec.ts';
import { hasRefs } from '../spec/runtime-refs.ts';
import type { InputError } from '../errors.ts';
import type { KindCheckContext, KindIssue } from '../spec/types.ts';

/** A model source string: its scheme and shape, and for a local one, that it is there. */
export function modelSourceIssues(value: unknown, path: Array<string | number>, ctx: KindCheckContext): KindIssue[] {
  if (typeof value !== 'string' || hasRefs(value)) return [];
  const p = parseModelSource(value);
  if ('error' in p) return [{ path, message: p.error, hint: p.hint }];
  const missing = ctx.baseDir === undefined ? undefined : missingLocalModel(p, ctx.baseDir);
  return missing
    ? [{ path, message: missing, hint: `relative paths start at the pipeline file's folder; or use ${MODEL_SOURCE_FORMS}` }]
    : [];
}

/**
 * A library's config errors (InputError with `where` naming the field, e.g. `near.size`) as issues at that field;
 * one with an `offset` inside the field's string value (ConfigError: a promptTemplate's unclosed `[[`) places the
 * issue at that character.
 */
export function issuesFrom(errors: readonly (InputError & { offset?: number })[]): KindIssue[] {
  return errors.map((e) => {
    const message = e.where && e.message.startsWith(`${e.where}: `) ? e.message.slice(e.where.length + 2) : e.message;
    return { path: e.where ? e.where.split('.') : [], message, hint: e.hint, ...(e.offset !== undefined ? { offset: e.offset } : {}) };
  });
}

/**
 * The task of the ingest stage the table `value` comes from, followed through dedupe and split (which keep its
 * columns); undefined when unknown (a parameter, a table from elsewhere).
 */
export function ingestTask(value: unknown, ctx: KindCheckContext): { stage: string; task: string } | undefined {
  const up = ctx.upstream(value);
  if (!up) return undefined;
  if (up.kind.kind === 'ingest')
    return typeof up.config.task === 'string' && !hasRefs(up.config.task) ? { stage: up.stage, task: up.config.task } : undefined;
  if (up.kind.kind === 'dedupe' || up.kind.kind === 'split') return ingestTask(up.config.table, up.context);
  return undefined;
}

/**
 * The label set an ingest stage declares for the table `value` comes from, followed through
 * dedupe and split (which keep labels as they are); undefined when unknown.
 */
export function declaredLabels(value: unknown, ctx: KindCheckContext): { stage: string; labels: string[] } | undefined {
  const up = ctx.upstream(value);
  if (!up) return undefined;
  if (up.kind.kind === 'ingest') {
    const labels = up.config.labels;
    return Array.isArray(labels) && !hasRefs(labels) && labels.every((l) => typeof l === 'string')
      ? { stage: up.stage, labels: labels as string[] }
      : undefined;
  }
  if (up.kind.kind === 'dedupe' || up.kind.kind === 'split') return declaredLabels(up.config.table, up.context);
  return undefined;
}
