/**
 * The hash audit records give a model (`modelHash`), the same in every record about it
 * (`model.registered`, the register stage's `stage.completed`, `serve.started`, `serve.swapped`,
 * `serve.stopped`): the sha256 of its ONNX file where it has one, else of its model folder (the
 * tree artifact, which names every file's hash). Records about the folder itself add it as
 * `details.tree`.
 */
export function modelHashOf(artifacts: readonly { role: string; sha256: string }[]): string | undefined {
  return (artifacts.find((a) => a.role === 'onnx') ?? artifacts.find((a) => a.role === 'model'))?.sha256;
}
