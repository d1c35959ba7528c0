/**
 * The trials of a search compared from a store: what `tempered runs --compare` and the dashboard's compare page both
 * read of each run (its train stages' validation columns and exported models' scores, its evaluate stages' metrics
 * documents) and hand to compareTrials, so the terminal and the page show the same rows, the same best marks and the
 * same run to choose.
 */
import { readFileSync } from 'node:fs';
import { tableFromIPC } from 'apache-arrow';
import type { ArtifactStore } from '../store/artifact-store.ts';
import { modelArtifacts, treeJson } from '../stages/register.ts';
import { isArtifactRef } from '../types.ts';
import { redactJson } from '../util/redact.ts';
import { compareTrials, VALIDATION_COLUMNS, type TrialArtifacts, type TrialComparison, type TrialRun } from './trials.ts';

type TrialStore = Pick<ArtifactStore, 'localPath' | 'readJson'>;

/**
 * The artifacts the comparison reads from `store` (a shared store's are fetched into the local copy): each train stage's
 * validation columns and exported model's tempered-model.json `training`, each evaluate stage's metrics document and its
 * report's sample rows. One
 * that cannot be read (not fetched from a shared store, collected) is left out, so its rows stay empty rather than the
 * comparison failing.
 */
export async function readTrialArtifacts(store: TrialStore, run: TrialRun): Promise<TrialArtifacts> {
  const exported: NonNullable<TrialArtifacts['exported']> = {};
  const samples: NonNullable<TrialArtifacts['samples']> = {};
  const out: TrialArtifacts = { histories: {}, metricsDocs: {}, exported, samples };
  const read = async (ref: unknown) => (isArtifactRef(ref) ? readFileSync(await store.localPath(ref.uri)) : undefined);
  for (const s of run.stages) {
    if (s.uses === 'train') {
      await read(s.outputs?.history)
        .then((bytes) => {
          if (!bytes) return;
          const table = tableFromIPC(bytes);
          out.histories[s.id] = Object.fromEntries(
            ['step', ...VALIDATION_COLUMNS].map((col) => [col, table.getChild(col)?.toArray() as ArrayLike<number> | undefined]),
          );
        })
        .catch(() => {});
      // The exported model's own scores, which register records: an early-stopped run exports its best step's weights.
      const model = s.outputs?.model;
      if (isArtifactRef(model))
        await modelArtifacts(model, store)
          .then(({ manifest }) => treeJson(store, manifest, 'tempered-model.json'))
          .then((info) => {
            if (info?.training && typeof info.training === 'object') exported[s.id] = info.training;
          })
          .catch(() => {});
    }
    if (s.uses === 'evaluate') {
      await read(s.outputs?.metrics)
        .then((bytes) => {
          if (bytes) out.metricsDocs[s.id] = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
        })
        .catch(() => {});
      await read(s.outputs?.report)
        .then((bytes) => {
          const report = bytes ? (JSON.parse(bytes.toString('utf8')) as { samples?: unknown }) : undefined;
          if (Array.isArray(report?.samples)) samples[s.id] = report.samples;
        })
        .catch(() => {});
    }
  }
  return out;
}

/**
 * The runs (statuses as read from Temporal) compared, in the order given. A secret-named parameter (hf_token) is
 * REDACTED before the comparison, so neither its value nor whether it differs between runs is shown.
 */
export async function compareTrialRuns(store: TrialStore, runs: TrialRun[]): Promise<TrialComparison> {
  const artifacts = await Promise.all(runs.map((run) => readTrialArtifacts(store, run)));
  return compareTrials(
    runs.map((run, i) => ({ run: { ...run, params: redactJson(run.params, [], { secretKeys: true }) }, artifacts: artifacts[i]! })),
  );
}
