/** Host-side learning-rate schedules: the train-step graph takes the rate as an input every step. */

export type ScheduleSpec =
  | { kind: 'constant'; lr: number; warmupSteps?: number }
  | { kind: 'linear'; lr: number; warmupSteps?: number; totalSteps: number; minLr?: number }
  | { kind: 'cosine'; lr: number; warmupSteps?: number; totalSteps: number; minLr?: number };

/** Learning rate for optimizer step `step` (0-based), matching HF's get_*_schedule_with_warmup. */
export function learningRate(s: ScheduleSpec, step: number): number {
  const warm = s.warmupSteps ?? 0;
  if (step < warm) return (s.lr * step) / Math.max(1, warm);
  if (s.kind === 'constant') return s.lr;
  const min = s.minLr ?? 0;
  const progress = Math.min(1, (step - warm) / Math.max(1, s.totalSteps - warm));
  const factor = s.kind === 'linear' ? 1 - progress : 0.5 * (1 + Math.cos(Math.PI * progress));
  return min + (s.lr - min) * Math.max(0, factor);
}
