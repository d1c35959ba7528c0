/**
 * Several optimizer steps in one onnxruntime run: the step graph becomes the body of an ONNX Loop whose
 * loop-carried values are the trainable weights and optimizer state.
 *
 * Why: onnxruntime-node copies every output of a run into fresh JavaScript buffers, and a step's
 * outputs are all the trainable weights plus their optimizer state (270 MB for a MiniLM-size full
 * fine-tune; bench/step-overhead.bench.ts measures the time). Inside a Loop the updated values feed the next iteration
 * without leaving onnxruntime, so that copy is paid once per run instead of once per step. On a GPU the
 * same change keeps weights on the device between steps.
 *
 * The per-step inputs (data, dropout masks, learning rate, step number) are fed stacked along a new
 * leading axis and picked per iteration with Gather; loss and gradient norm come back stacked.
 */
import type { Graph, Model, Node, ValueInfo } from '../onnx/ir.ts';
import { GRAD_NORM_OUTPUT, LOSS_OUTPUT, LR_INPUT, STEP_INPUT, type TrainProgram } from './compile.ts';

export const TRIP_COUNT_INPUT = 'loop::trip_count';
/** Outer-graph name of a per-step input stacked over the run's steps. */
export const stackedName = (input: string) => `${input}::steps`;
/** Outer-graph names of a loop-carried value before the first and after the last step. */
export const startName = (input: string) => `${input}::start`;
export const endName = (output: string) => `${output}::end`;

const ITER = 'loop::iter',
  COND = 'loop::cond',
  COND_OUT = 'loop::cond_out';

/** The step graph of `prog` wrapped in a Loop that runs `loop::trip_count` steps. */
export function multiStepModel(prog: TrainProgram): Model {
  const step = prog.step;
  const g = step.graph;
  const input = (name: string): ValueInfo => {
    const v = g.inputs.find((i) => i.name === name);
    if (!v) throw new Error(`multi-step: the step graph has no input '${name}'`);
    return v;
  };
  const carried = [
    ...prog.params.map((p) => ({ input: input(p.name), output: `${p.name}::new` })),
    ...prog.state.map((s) => ({ input: input(s.input), output: s.output })),
  ];
  // Loss and gradient norm have the step graph's float type (float64 programs exist: gradient checks).
  const output = (name: string): ValueInfo => {
    const v = g.outputs.find((o) => o.name === name);
    if (!v?.dtype) throw new Error(`multi-step: the step graph has no typed output '${name}'`);
    return v;
  };
  const loss = output(LOSS_OUTPUT),
    gradNorm = output(GRAD_NORM_OUTPUT);
  const carriedNames = new Set(carried.map((c) => c.input.name));
  const perStep = g.inputs.filter((v) => !carriedNames.has(v.name));
  // The body picks these per step like the data; a step graph without them is not one compileTrainStep made.
  for (const name of [LR_INPUT, STEP_INPUT]) input(name);

  const body: Graph = {
    name: `${g.name}_body`,
    nodes: [
      ...perStep.map(
        (v): Node => ({
          name: `loop::pick_${v.name}`,
          opType: 'Gather',
          domain: '',
          inputs: [stackedName(v.name), ITER],
          outputs: [v.name],
          attrs: { axis: { kind: 'int', value: 0 } },
        }),
      ),
      ...g.nodes,
      { name: 'loop::keep_going', opType: 'Identity', domain: '', inputs: [COND], outputs: [COND_OUT], attrs: {} },
    ],
    inputs: [{ name: ITER, dtype: 'int64', shape: [] }, { name: COND, dtype: 'bool', shape: [] }, ...carried.map((c) => c.input)],
    outputs: [
      { name: COND_OUT, dtype: 'bool', shape: [] },
      ...carried.map((c) => ({ name: c.output, dtype: c.input.dtype, shape: c.input.shape })),
      { name: LOSS_OUTPUT, dtype: loss.dtype, shape: [] },
      { name: GRAD_NORM_OUTPUT, dtype: gradNorm.dtype, shape: [] },
    ],
    // Frozen weights stay in the outer graph, where the body reads them by name; large ones can then go
    // to external data like any initializer.
    initializers: new Map(),
    valueInfo: [],
  };
  const outer: Graph = {
    name: `${g.name}_steps`,
    nodes: [
      {
        name: 'loop::steps',
        opType: 'Loop',
        domain: '',
        inputs: [TRIP_COUNT_INPUT, '', ...carried.map((c) => startName(c.input.name))],
        outputs: [...carried.map((c) => endName(c.output)), stackedName(LOSS_OUTPUT), stackedName(GRAD_NORM_OUTPUT)],
        attrs: { body: { kind: 'graph', value: body } },
      },
    ],
    inputs: [
      { name: TRIP_COUNT_INPUT, dtype: 'int64', shape: [] },
      ...perStep.map((v) => ({ name: stackedName(v.name), dtype: v.dtype, shape: v.shape && ['loop_steps', ...v.shape] })),
      ...carried.map((c) => ({ ...c.input, name: startName(c.input.name) })),
    ],
    outputs: [
      ...carried.map((c) => ({ name: endName(c.output), dtype: c.input.dtype, shape: c.input.shape })),
      { name: stackedName(LOSS_OUTPUT), dtype: loss.dtype, shape: ['loop_steps'] },
      { name: stackedName(GRAD_NORM_OUTPUT), dtype: gradNorm.dtype, shape: ['loop_steps'] },
    ],
    initializers: g.initializers,
    valueInfo: [],
  };
  return { ...step, graph: outer };
}
