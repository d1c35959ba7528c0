/** What the server needs from a model; the lead wires the real ONNX predictor behind it. */

export interface Prediction {
  label: string;
  /** Label → probability (or score), for every label the model knows. */
  scores: Record<string, number>;
}

export interface Predictor {
  /** `model@version`, reported in every response and in /metrics. */
  readonly id: string;
  readonly labels: string[];
  predict(texts: string[]): Promise<Prediction[]>;
  /** Frees the model; called once, after every request using it has finished. */
  close(): Promise<void> | void;
}

/** The version the serving alias points at now; `load` is only called when `key` changes. */
export interface CurrentModel {
  /** Changes exactly when a different model should be served, e.g. `spam-clf@3` or a hash. */
  key: string;
  load(): Promise<Predictor>;
}

export type ResolveCurrent = () => Promise<CurrentModel>;
