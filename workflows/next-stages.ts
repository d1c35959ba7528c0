/**
 * The run's scheduling decision, apart from Temporal: given the plan and where each stage stands,
 * which pending stages start now, which can never run (skipped, with why) or are cancelled, and
 * whether the run is done. Pure and deterministic, so `pipelineRun` calls it on every wake-up and
 * tests call it without a server.
 */
import type { PlannedPipeline } from '../src/spec/types.ts';
import type { StageState } from './types.ts';

export interface RunProgress {
  /** State of every stage, by id. */
  states: ReadonlyMap<string, StageState>;
  /** Stages running now. */
  running: number;
  /** A stage failed under fail-fast: nothing new starts, pending stages are skipped. */
  stopping: boolean;
  /** The run was cancelled: pending stages are cancelled. */
  cancelled: boolean;
  /**
   * While the run gate is undecided, only these stages (the ingest stages) may start; the others
   * wait. Undefined when there is no gate or it has been decided.
   */
  gateAllows?: ReadonlySet<string>;
}

export interface NextStages {
  /** Stages to start now, in plan order, at most `concurrency - running`. */
  start: string[];
  /** Pending stages that can never run, with the reason shown to people. */
  skip: { id: string; because: string }[];
  /** Pending stages to mark cancelled (the run was cancelled). */
  cancel: string[];
  /** Nothing is running and nothing starts: the run ends. Stages held by the gate stay pending. */
  done: boolean;
}

const FINISHED_OK: readonly StageState[] = ['succeeded', 'cached'];
const NEVER_OK: readonly StageState[] = ['failed', 'skipped', 'cancelled'];

export function nextStages(plan: Pick<PlannedPipeline, 'stages' | 'concurrency'>, progress: RunProgress): NextStages {
  // Decisions made in this pass count at once: a stage skipped here blocks its dependents (which
  // come later in plan order), and each start takes a slot.
  const state = new Map(progress.states);
  const out: NextStages = { start: [], skip: [], cancel: [], done: false };
  let running = progress.running;
  for (const stage of plan.stages) {
    if (state.get(stage.id) !== 'pending') continue;
    if (progress.cancelled) {
      state.set(stage.id, 'cancelled');
      out.cancel.push(stage.id);
      continue;
    }
    const blocker = stage.needs.find((n) => NEVER_OK.includes(state.get(n)!));
    if (blocker || progress.stopping) {
      state.set(stage.id, 'skipped');
      const was = blocker && state.get(blocker) === 'skipped' ? 'was skipped' : blocker && state.get(blocker);
      out.skip.push({
        id: stage.id,
        because: blocker ? `needs '${blocker}', which ${was}` : 'the run stopped after a failure (fail-fast)',
      });
      continue;
    }
    const ready = stage.needs.every((n) => FINISHED_OK.includes(state.get(n)!));
    const heldByGate = progress.gateAllows !== undefined && !progress.gateAllows.has(stage.id);
    if (ready && running < plan.concurrency && !heldByGate) {
      state.set(stage.id, 'running');
      out.start.push(stage.id);
      running++;
    }
  }
  out.done = running === 0;
  return out;
}
