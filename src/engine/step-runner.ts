/**
 * One optimizer step on onnxruntime: the fused step graph, or micro-batch gradients accumulated on the
 * host and then the apply graph. The trainable weights and optimizer state live between steps in the
 * maps the caller hands in (name → values); each step replaces their entries with the updated values,
 * so the caller reads current weights for evaluation and checkpoints from the same maps.
 */
import type * as ort from 'onnxruntime-node';
import type { DType, TypedArray } from '../onnx/dtype.ts';
import { accumulateGradients } from './accumulate.ts';
import { GRAD_NORM_OUTPUT, LOSS_OUTPUT, LR_INPUT, STEP_INPUT, type TrainProgram } from './compile.ts';
import { createSession, toOrt, type SessionOptions } from './runtime.ts';

export interface StepResult {
  loss: number;
  gradNorm: number;
}

/** A value the step reads as `input` and returns updated as `output`, kept in `store` between steps. */
interface Carried {
  store: Map<string, TypedArray>;
  input: string;
  output: string;
  dtype: DType;
  dims: number[];
}

export class StepRunner {
  private readonly params: Carried[];
  private readonly carried: Carried[];

  private constructor(
    private readonly prog: TrainProgram,
    private readonly accumulation: number,
    private readonly sessions: { step?: ort.InferenceSession; grad?: ort.InferenceSession; apply?: ort.InferenceSession },
    params: Map<string, TypedArray>,
    state: Map<string, TypedArray>,
  ) {
    this.params = prog.params.map((p) => ({ store: params, input: p.name, output: `${p.name}::new`, dtype: p.dtype, dims: p.dims }));
    this.carried = [...this.params, ...prog.state.map((s) => ({ store: state, input: s.input, output: s.output, dtype: s.dtype, dims: s.dims }))];
  }

  /** Opens the sessions a step needs: the fused step graph without accumulation, grad + apply with it. */
  static async open(prog: TrainProgram, params: Map<string, TypedArray>, state: Map<string, TypedArray>, accumulation: number, sessOpts: SessionOptions): Promise<StepRunner> {
    const sessions = accumulation === 1
      ? { step: await createSession(prog.step, sessOpts) }
      : { grad: await createSession(prog.grad, sessOpts), apply: await createSession(prog.apply, sessOpts) };
    return new StepRunner(prog, accumulation, sessions, params, state);
  }

  /**
   * Runs one optimizer step at learning rate `lr` as step number `step` (1-based, for bias correction);
   * `microBatch` gives the data feeds of each micro-batch in turn. The maps take the new values only
   * when the loss is finite, so a diverged step leaves the last good weights for the caller to report on.
   */
  async run(microBatch: () => Record<string, ort.Tensor>, lr: number, step: number): Promise<StepResult> {
    const scalars = { [LR_INPUT]: toOrt('float32', Float32Array.of(lr), []), [STEP_INPUT]: toOrt('float32', Float32Array.of(step), []) };
    const feedsOf = (values: Carried[]) => Object.fromEntries(values.map((c) => [c.input, toOrt(c.dtype, c.store.get(c.input)!, c.dims)]));
    let loss: number;
    let out: ort.InferenceSession.ReturnType;
    if (this.sessions.step) {
      out = await this.sessions.step.run({ ...microBatch(), ...feedsOf(this.carried), ...scalars });
      loss = Number(out[LOSS_OUTPUT]!.data[0]);
    } else {
      const g = await accumulateGradients(this.sessions.grad!, this.prog, this.accumulation, () => ({ ...microBatch(), ...feedsOf(this.params) }));
      loss = g.loss;
      out = await this.sessions.apply!.run({ ...feedsOf(this.carried), ...g.gradFeeds, ...scalars });
    }
    if (Number.isFinite(loss)) for (const c of this.carried) c.store.set(c.input, out[c.output]!.data as TypedArray);
    return { loss, gradNorm: Number(out[GRAD_NORM_OUTPUT]!.data[0]) };
  }

  async release(): Promise<void> {
    for (const s of Object.values(this.sessions)) await s?.release();
  }
}
