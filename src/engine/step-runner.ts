/**
 * Optimizer steps on onnxruntime: the fused step graph (one step per run, or several through an ONNX
 * Loop, see multi-step.ts), or micro-batch gradients accumulated on the host and then the apply graph.
 * The trainable weights and optimizer state live between steps in the maps the caller hands in
 * (name → values); each run replaces their entries with the updated values, so the caller reads
 * current weights for evaluation and checkpoints from the same maps.
 */
import type * as ort from 'onnxruntime-node';
import { allocate, BYTES, type DType, type TypedArray } from '../onnx/dtype.ts';
import { accumulateGradients } from './accumulate.ts';
import { GRAD_NORM_OUTPUT, LOSS_OUTPUT, LR_INPUT, STEP_INPUT, type TrainProgram } from './compile.ts';
import { endName, multiStepModel, stackedName, startName, TRIP_COUNT_INPUT } from './multi-step.ts';
import { createSession, sessionDevice, toOrt, type Device, type SessionOptions } from './runtime.ts';
import { runsOnCuda } from './cuda.ts';

export interface StepResult {
  loss: number;
  gradNorm: number;
}

/** Where runs of steps must stop: absolute step numbers (`ends`) and multiples of intervals (`everys`). */
export interface RunStops {
  ends: (number | undefined)[];
  everys: (number | undefined)[];
}

/**
 * Steps per onnxruntime run when the caller does not say. Several steps per run pay off when a step's
 * outputs are large, as in full fine-tuning, where onnxruntime-node's copy of the updated weights and
 * optimizer state into JavaScript, with the allocations around it, is a few percent of a step
 * (bench/steps-per-run.bench.ts; figures in the README's bench table). With small outputs (LoRA, a
 * head) the Loop gains nothing and a one-step Loop measured slightly slower than the plain graph, so
 * one step per run without the Loop stays the default there.
 *
 * On CUDA every run copies the weights and optimizer state to the GPU and back, which dominates a step
 * (bench/steps-per-run.bench.ts with BENCH_DEVICE=cuda; figures in the README), so CUDA runs 8 steps
 * per run whatever the model. There, Loop runs were checked against the CPU's single-step curve (4e-7) and for
 * bitwise resume by scripts/gpu-train-check.ts. WebGPU has no Loop kernel: one step per run there, and
 * for `auto` without the CUDA build, which tries WebGPU first.
 */
export function defaultStepsPerRun(prog: TrainProgram, device: Device = 'cpu'): number {
  if (runsOnCuda(device)) return 8;
  if (device !== 'cpu') return 1;
  const bytes = [...prog.params, ...prog.state].reduce((s, v) => s + v.dims.reduce((a, b) => a * b, 1) * BYTES[v.dtype], 0);
  return bytes >= 32 * 2 ** 20 ? 4 : 1;
}

/**
 * How many steps the next run takes: at most `perRun`, and never past a step where the caller has to
 * act: one of `ends` (absolute step numbers, such as the last step) or a multiple of one of `everys`
 * (evaluation, checkpoint intervals). Undefined entries are ignored.
 */
export function stepsThisRun(step: number, perRun: number, ends: (number | undefined)[], everys: (number | undefined)[]): number {
  let k = Math.max(1, perRun);
  for (const e of ends) if (e !== undefined && e > step) k = Math.min(k, e - step);
  for (const e of everys) if (e !== undefined && e > 0) k = Math.min(k, e - (step % e));
  return k;
}

/**
 * Sizes runs of steps. onnxruntime-node runs a session synchronously on the JavaScript thread, so while
 * a run lasts nothing else happens there: no Temporal heartbeat, no cancellation, no progress. Runs
 * therefore also stay within `budgetMs` at the step time measured so far; the first run takes one step
 * to measure it. A budget of Infinity (a stage in a process of its own, whose thread serves nothing
 * else) sizes runs for throughput alone: `perRun` steps from the first run on. The number of steps
 * per run never changes results, only how often control returns.
 */
export class RunSizer {
  private stepMs?: number;

  constructor(
    private readonly perRun: number,
    private readonly budgetMs = 5000,
  ) {}

  /** Steps for the run starting after `step` (see stepsThisRun for `ends` and `everys`). */
  next(step: number, ends: (number | undefined)[], everys: (number | undefined)[]): number {
    const byTime =
      this.budgetMs === Infinity ? this.perRun : this.stepMs === undefined ? 1 : Math.max(1, Math.floor(this.budgetMs / this.stepMs));
    return stepsThisRun(step, Math.min(this.perRun, byTime), ends, everys);
  }

  /** Records how long a run of `steps` steps took. */
  observe(ms: number, steps: number): void {
    this.stepMs = ms / Math.max(1, steps);
  }
}

/** A value the step reads as `input` and returns updated as `output`, kept in `store` between steps. */
interface Carried {
  store: Map<string, TypedArray>;
  input: string;
  output: string;
  dtype: DType;
  dims: number[];
}

interface Sessions {
  /** The step graph, one step per run. */
  step?: ort.InferenceSession;
  /** The step graph inside a Loop, any number of steps per run. */
  loop?: ort.InferenceSession;
  grad?: ort.InferenceSession;
  apply?: ort.InferenceSession;
}

export class StepRunner {
  private readonly params: Carried[];
  private readonly carried: Carried[];

  private readonly sizer: RunSizer;

  private constructor(
    private readonly prog: TrainProgram,
    private readonly accumulation: number,
    private readonly sessions: Sessions,
    params: Map<string, TypedArray>,
    state: Map<string, TypedArray>,
    stepsPerRun: number,
    runBudgetMs?: number,
  ) {
    this.sizer = new RunSizer(stepsPerRun, runBudgetMs);
    this.params = prog.params.map((p) => ({ store: params, input: p.name, output: `${p.name}::new`, dtype: p.dtype, dims: p.dims }));
    this.carried = [
      ...this.params,
      ...prog.state.map((s) => ({ store: state, input: s.input, output: s.output, dtype: s.dtype, dims: s.dims })),
    ];
  }

  /**
   * Opens the sessions the steps need: with gradient accumulation the grad and apply graphs (one step
   * per run); otherwise the step graph, inside a Loop when more than one step per run is wanted
   * (`stepsPerRun`, default defaultStepsPerRun).
   */
  static async open(
    prog: TrainProgram,
    params: Map<string, TypedArray>,
    state: Map<string, TypedArray>,
    opts: { accumulation: number; stepsPerRun?: number; runBudgetMs?: number } & SessionOptions,
  ): Promise<StepRunner> {
    const { accumulation, stepsPerRun, runBudgetMs, ...rest } = opts;
    // A training step's intermediates are its activations: planned once more beside the arena they would be held twice.
    const sessOpts = { memPattern: false, ...rest };
    const perRun = accumulation > 1 ? 1 : Math.max(1, stepsPerRun ?? defaultStepsPerRun(prog, sessOpts.device));
    const sessions: Sessions =
      accumulation > 1
        ? { grad: await createSession(prog.grad, sessOpts), apply: await createSession(prog.apply, sessOpts) }
        : perRun > 1
          ? { loop: await createSession(multiStepModel(prog), sessOpts) }
          : { step: await createSession(prog.step, sessOpts) };
    return new StepRunner(prog, accumulation, sessions, params, state, perRun, runBudgetMs);
  }

  /**
   * Runs the steps that follow `step` in one go, as many as RunSizer allows without passing `stops`,
   * at the learning rates `lrAt(step index)` gives. Returns each step's result with its learning rate,
   * and the run's wall time.
   */
  async next(
    step: number,
    stops: RunStops,
    lrAt: (step: number) => number,
    microBatch: () => Record<string, ort.Tensor>,
  ): Promise<{ steps: (StepResult & { lr: number })[]; ms: number }> {
    const t0 = performance.now();
    const k = this.sizer.next(step, stops.ends, stops.everys);
    const lrs = Array.from({ length: k }, (_, i) => lrAt(step + i));
    const results = await this.run(microBatch, lrs, step + 1);
    const ms = performance.now() - t0;
    this.sizer.observe(ms, k);
    return { steps: results.map((r, i) => ({ ...r, lr: lrs[i]! })), ms };
  }

  /** The most steps one `run` call takes. */
  get maxStepsPerRun(): number {
    return this.sessions.loop ? Number.MAX_SAFE_INTEGER : 1;
  }

  /**
   * Runs one optimizer step per entry of `lrs`, the first numbered `firstStep` (1-based, for bias
   * correction). `microBatch` gives the data feeds of each micro-batch in turn. The maps take the new
   * values of each onnxruntime run only when all its losses are finite, so the weights left behind are
   * those from before the run that diverged, for the caller to report on.
   */
  async run(microBatch: () => Record<string, ort.Tensor>, lrs: number[], firstStep: number): Promise<StepResult[]> {
    if (lrs.length > this.maxStepsPerRun)
      throw new Error(
        `StepRunner: ${lrs.length} steps in one run; this runner takes ${this.maxStepsPerRun} (open it with stepsPerRun > 1 and no gradient accumulation for more)`,
      );
    if (this.sessions.loop) return this.runLoop(microBatch, lrs, firstStep);
    return [
      this.sessions.step ? await this.runStep(microBatch(), lrs[0]!, firstStep) : await this.runAccumulated(microBatch, lrs[0]!, firstStep),
    ];
  }

  private scalars(lr: number, step: number): Record<string, ort.Tensor> {
    return { [LR_INPUT]: toOrt('float32', Float32Array.of(lr), []), [STEP_INPUT]: toOrt('float32', Float32Array.of(step), []) };
  }

  private feedsOf(values: Carried[], name: (input: string) => string = (n) => n): Record<string, ort.Tensor> {
    return Object.fromEntries(values.map((c) => [name(c.input), toOrt(c.dtype, c.store.get(c.input)!, c.dims)]));
  }

  private commit(
    results: StepResult[],
    out: ort.InferenceSession.ReturnType,
    outputName: (output: string) => string = (n) => n,
  ): StepResult[] {
    if (results.every((r) => Number.isFinite(r.loss)))
      for (const c of this.carried) c.store.set(c.input, out[outputName(c.output)]!.data as TypedArray);
    return results;
  }

  private async runStep(batch: Record<string, ort.Tensor>, lr: number, step: number): Promise<StepResult> {
    const out = await this.sessions.step!.run({ ...batch, ...this.feedsOf(this.carried), ...this.scalars(lr, step) });
    return this.commit([{ loss: Number(out[LOSS_OUTPUT]!.data[0]), gradNorm: Number(out[GRAD_NORM_OUTPUT]!.data[0]) }], out)[0]!;
  }

  private async runAccumulated(microBatch: () => Record<string, ort.Tensor>, lr: number, step: number): Promise<StepResult> {
    const g = await accumulateGradients(this.sessions.grad!, this.prog, this.accumulation, () => ({
      ...microBatch(),
      ...this.feedsOf(this.params),
    }));
    const out = await this.sessions.apply!.run({ ...this.feedsOf(this.carried), ...g.gradFeeds, ...this.scalars(lr, step) });
    return this.commit([{ loss: g.loss, gradNorm: Number(out[GRAD_NORM_OUTPUT]!.data[0]) }], out)[0]!;
  }

  private async runLoop(microBatch: () => Record<string, ort.Tensor>, lrs: number[], firstStep: number): Promise<StepResult[]> {
    // Steps of one Loop run read slices of one stacked tensor, so their batches must agree in shape;
    // batches bucketed by length can differ, and then each stretch of equal shapes gets a run of its own.
    // Each batch is copied into the stack as soon as it is made: feed builders may reuse their buffers
    // (the dropout masker does).
    const results: StepResult[] = [];
    let stretch: Stack | undefined;
    let start = 0;
    for (let i = 0; i < lrs.length; i++) {
      const batch = microBatch();
      if (stretch && !stretch.fits(batch)) {
        results.push(...(await this.runStretch(stretch, lrs.slice(start, i), firstStep + start)));
        if (!results.every((r) => Number.isFinite(r.loss))) return results;
        stretch = undefined;
      }
      if (!stretch) {
        stretch = new Stack(batch, lrs.length - i);
        start = i;
      }
      stretch.push(batch);
    }
    results.push(...(await this.runStretch(stretch!, lrs.slice(start), firstStep + start)));
    return results;
  }

  private async runStretch(batches: Stack, lrs: number[], firstStep: number): Promise<StepResult[]> {
    const k = lrs.length;
    const out = await this.sessions.loop!.run({
      [TRIP_COUNT_INPUT]: toOrt('int64', BigInt64Array.of(BigInt(k)), []),
      [stackedName(LR_INPUT)]: toOrt('float32', Float32Array.from(lrs), [k]),
      [stackedName(STEP_INPUT)]: toOrt(
        'float32',
        Float32Array.from(lrs, (_, i) => firstStep + i),
        [k],
      ),
      ...batches.feeds(),
      ...this.feedsOf(this.carried, startName),
    });
    const norms = out[stackedName(GRAD_NORM_OUTPUT)]!.data as Float32Array | Float64Array;
    const results = Array.from(out[stackedName(LOSS_OUTPUT)]!.data as Float32Array | Float64Array, (loss, i) => ({
      loss,
      gradNorm: norms[i]!,
    }));
    return this.commit(results, out, endName);
  }

  /** The device the steps run on (what `auto` chose). */
  get device(): Exclude<Device, 'auto'> {
    return sessionDevice((this.sessions.step ?? this.sessions.loop ?? this.sessions.grad)!);
  }

  async release(): Promise<void> {
    for (const s of Object.values(this.sessions)) await s?.release();
  }
}

/** Micro-batches of equal shapes stacked along a new leading axis, under the Loop's input names. */
class Stack {
  private readonly columns = new Map<string, { dtype: DType; dims: readonly number[]; size: number; data?: TypedArray }>();
  private count = 0;

  /** A stack of one is fed without copying: it runs before the next batch is made. */
  constructor(
    first: Record<string, ort.Tensor>,
    private readonly capacity: number,
  ) {
    for (const [name, t] of Object.entries(first)) {
      const dtype = toDType(t.type);
      this.columns.set(name, {
        dtype,
        dims: t.dims,
        size: t.data.length,
        data: capacity === 1 ? undefined : allocate(dtype, t.data.length * capacity),
      });
    }
  }

  fits(batch: Record<string, ort.Tensor>): boolean {
    const names = Object.keys(batch);
    return names.length === this.columns.size && names.every((n) => this.columns.get(n)?.dims.join() === batch[n]!.dims.join());
  }

  push(batch: Record<string, ort.Tensor>): void {
    if (this.count >= this.capacity) throw new Error(`StepRunner: more than ${this.capacity} batches in one stack`);
    for (const [name, c] of this.columns) {
      if (this.capacity === 1) c.data = batch[name]!.data as TypedArray;
      else (c.data as Float32Array).set(batch[name]!.data as Float32Array, this.count * c.size);
    }
    this.count++;
  }

  feeds(): Record<string, ort.Tensor> {
    const out: Record<string, ort.Tensor> = {};
    for (const [name, c] of this.columns)
      out[stackedName(name)] = toOrt(c.dtype, c.data!.subarray(0, this.count * c.size) as TypedArray, [this.count, ...c.dims]);
    return out;
  }
}

function toDType(t: ort.Tensor.Type): DType {
  switch (t) {
    case 'float32':
    case 'float64':
    case 'int64':
    case 'int32':
    case 'bool':
    case 'uint8':
    case 'int8':
    case 'float16':
      return t;
    default:
      throw new Error(`StepRunner: feeds of type ${t} are not supported`);
  }
}
