/**
 * What every command needs: Temporal settings, a client (starting the embedded server when no
 * TEMPORAL_ADDRESS is set and the command needs one), the stage kinds, the state folders.
 */
import { readFileSync } from 'node:fs';
import { Client } from '@temporalio/client';
import { formatDataReport, type DataReport } from '../src/data/report.ts';
import { formatEvaluateReport, formatMetrics, printable } from './format.ts';
import { isArtifactRef, type ArtifactRef } from '../src/types.ts';
import { connectClient, temporalSettings, TASK_QUEUE, type TemporalSettings } from '../infra/connection.ts';
import { temporalDataConverter } from '../infra/payload-codec.ts';
import { ensureEmbeddedServer } from '../infra/dev-server.ts';
import { checkNamespace } from '../client/namespace.ts';
import { certainFault, tlsMismatchHint } from '../client/reach.ts';
import { ensureDir, statePaths, type StatePaths } from '../infra/state.ts';
import { loadStageKinds, kindRegistry } from '../src/stages/stage-kinds.ts';
import type { AnyStageKind } from '../src/stages/types.ts';
import type { KindRegistry } from '../src/spec/types.ts';
import type { RunStatus } from '../workflows/types.ts';
import type { ArtifactStore } from '../src/store/artifact-store.ts';
import { openArtifactStore } from '../src/store/open-store.ts';
import type { StageCache } from '../src/store/stage-cache.ts';
import { openStageCache, type OpenedStageCache } from '../src/store/open-stage-cache.ts';
import { openProgressPoints, type ProgressPoints } from '../src/store/progress-points.ts';
import { KeptOpen } from '../src/db/kept-open.ts';
import { openAudit, type AuditLog } from '../src/audit/log.ts';

import { CliError } from './errors.ts';
import { IntegrityError } from '../src/errors.ts';

export { CliError };

export interface CliContext {
  paths: StatePaths;
  kinds: Map<string, AnyStageKind>;
  registry: KindRegistry;
  taskQueue: string;
  settings(): TemporalSettings;
  /**
   * `patient`: try the address for the SDK's whole connect timeout even where it is certain at once that nothing
   * answers (a worker, which a supervisor restarts: one that failed in a second would spend systemd's default start
   * limit of 5 in 10 s during a short outage of the server); the error says the same either way.
   */
  client(opts?: { startServer?: boolean; patient?: boolean }): Promise<Client>;
  store(): ArtifactStore;
  /** Formats a report artifact from the local store; undefined when it is not there (see fetchReports). */
  readReport(ref: unknown): string | undefined;
  /** Formats an evaluate stage's metrics artifact from the local store (formatMetrics); undefined when it is not there. */
  readMetrics(ref: unknown): string | undefined;
  /**
   * Brings the stages' report artifacts into the local store from the shared one (TEMPERED_STORE), so
   * readReport finds them on a host that ran none of the stages. A report that cannot be fetched is
   * left out of the output, not an error.
   */
  fetchReports(st: RunStatus): Promise<void>;
  cache(): StageCache;
  /** The audit log, opened on first use and kept until close (the worker's stage hook writes to it). */
  auditLog(): KeptOpen<AuditLog>;
  /** Where this process's workers put training points (one per process: closing stores the last ones). */
  progressPoints(): ProgressPoints;
  log(msg: string): void;
  close(): Promise<void>;
}

export async function createContext(): Promise<CliContext> {
  const paths = statePaths();
  const kinds = await loadStageKinds();
  let client: Client | undefined;
  let store: ArtifactStore | undefined;
  let cache: OpenedStageCache | undefined;
  const audit = new KeptOpen(() => openAudit(paths.auditDb));
  let points: ProgressPoints | undefined;
  const getStore = () => (store ??= openArtifactStore(ensureDir(paths.store)));
  // A JSON artifact of the local store as `format` shows it; undefined when it is not there (see fetchReports), is not
  // JSON, or is not what `format` reads: the store is another's to fill, and a status shows what it can without it.
  const formatStored = (ref: unknown, format: (value: unknown) => string | undefined): string | undefined => {
    if (!isArtifactRef(ref) || !getStore().has(ref.sha256)) return undefined;
    try {
      return format(JSON.parse(readFileSync(getStore().pathOf(ref), 'utf8')));
    } catch {
      return undefined;
    }
  };
  return {
    paths,
    kinds,
    registry: kindRegistry(kinds),
    taskQueue: TASK_QUEUE,
    settings: () => temporalSettings(),
    log: (m) => console.error(m),
    store: getStore,
    // One per process, so closing waits for every stage-cache upload its workers left running.
    cache: () => (cache ??= openStageCache(paths.cache, getStore(), paths.registryDb)).cache,
    auditLog: () => audit,
    progressPoints: () =>
      (points ??= openProgressPoints(paths.progress, paths.registryDb, (e) =>
        console.error(`cannot record a training point: ${(e as Error)?.message ?? e}`),
      )),
    readReport: (ref) =>
      formatStored(ref, (value) => {
        const report = value as { kind?: string };
        return report.kind === 'ingest' || report.kind === 'dedupe' || report.kind === 'split'
          ? // A quarantined row's detail quotes the data, and a source's name is the user's: neither reaches the terminal raw.
            formatDataReport(report as DataReport)
              .split('\n')
              .map(printable)
              .join('\n')
          : formatEvaluateReport(report);
      }),
    readMetrics: (ref) => formatStored(ref, formatMetrics),
    async fetchReports(st) {
      const store = getStore();
      const missing = st.stages
        .flatMap((s) => [s.outputs?.report, s.outputs?.metrics])
        .filter((ref): ref is ArtifactRef => isArtifactRef(ref) && !store.has(ref.sha256));
      // Without a shared store there is nowhere to fetch them from: most often the run's workers share a bucket this
      // shell was not given, and a status without its reports looked complete.
      if (!store.remote) {
        if (missing.length)
          console.error(
            `note: ${missing.length} stage report(s) are not in this host's store (${store.root}), so the status is shown without them: where the run's workers share a TEMPERED_STORE, set it (and AWS_*) here as on them`,
          );
        return;
      }
      for (const [i, ref] of missing.entries()) {
        const failed = await store.verify(ref).then(
          () => undefined,
          (e: Error) => e,
        );
        // A report the store no longer has (collected, damaged) leaves the others to try; a store that refused one (a
        // setting, an outage) refuses them all: said once, and the rest not tried.
        if (failed instanceof IntegrityError) continue;
        if (failed) {
          console.error(
            `note: ${missing.length - i} stage report(s) could not be read from the store ${store.remote.url}, so the status is shown without them: ${failed.message}`,
          );
          return;
        }
      }
    },
    async client(opts = {}) {
      if (client) return client;
      // Before connecting, and before a dev server is started for a command that a malformed key then fails (it
      // would be left running): the key's own error, not "cannot reach Temporal".
      let dataConverter;
      try {
        dataConverter = temporalDataConverter();
      } catch (e) {
        throw new CliError((e as Error).message);
      }
      let s = temporalSettings();
      if (s.embedded && opts.startServer) {
        const h = await ensureEmbeddedServer({ log: (m) => console.error(m) });
        if (h.started) console.error(`Temporal dev server started at ${h.address} (web UI ${h.uiUrl})`);
        s = temporalSettings();
      }
      const how = s.embedded ? 'start it with `tempered server start`, or set TEMPORAL_ADDRESS to your cluster' : 'check TEMPORAL_ADDRESS';
      const fault = opts.patient ? undefined : await certainFault(s.address);
      if (fault) throw new CliError(`cannot reach Temporal at ${s.address} (${fault}): ${how}.`);
      try {
        // Connection.connect has had the server's GetSystemInfo answer (the SDK's ensureConnected): no second call.
        client = new Client({ connection: await connectClient(s), namespace: s.namespace, dataConverter });
      } catch (e) {
        const found = opts.patient ? await certainFault(s.address) : undefined;
        if (found) throw new CliError(`cannot reach Temporal at ${s.address} (${found}): ${how}.`);
        const tls = s.embedded ? '' : ` and TLS: ${tlsMismatchHint(s)}`;
        throw new CliError(`cannot reach Temporal at ${s.address} (${(e as Error).message.split('\n')[0]}): ${how}${tls}.`);
      }
      await checkNamespace(client.workflowService, s).catch((e: Error) => {
        client = undefined;
        throw new CliError(e.message);
      });
      return client;
    },
    async close() {
      await cache?.close();
      await points?.close();
      await audit.close();
      await client?.connection.close().catch(() => undefined);
    },
  };
}
