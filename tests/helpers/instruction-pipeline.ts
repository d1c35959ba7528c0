/**
 * The head every instruction-tuning pipeline in the e2e tests shares: ingest instruction rows, split
 * them 80/20 and open a causal-LM train stage on the training split. The caller appends the rest of
 * the train stage's `with:` (indented six spaces) and the later stages.
 */
export function instructionPipelineHead(o: { name: string; path: string; promptTemplate: string; model: string }): string {
  return `name: ${o.name}
stages:
  ingest:
    uses: ingest
    with:
      path: ${o.path}
      task: instruction
      promptTemplate: "${o.promptTemplate}"
      fields:
        response: output
  split:
    uses: split
    needs: ingest
    with:
      table: \${{ stages.ingest.outputs.table }}
      ratios:
        train: 0.8
        validation: 0
        test: 0.2
      seed: 1
  train:
    uses: train
    needs: split
    with:
      task: causal-lm
      model: ${o.model}
      train: \${{ stages.split.outputs.train }}
`;
}
