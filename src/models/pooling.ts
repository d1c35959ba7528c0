/**
 * How a BERT-family classifier makes one vector of a text for its head. Its own module, free of graph code, so the
 * stage schemas (loaded by every `validate`) and the recipes share one list.
 *
 * - `mean`: the mean of the last hidden states over real tokens (sentence-transformers' pooling; the default).
 * - `cls`: the [CLS] token's last hidden state.
 * - `pooler`: tanh(dense([CLS])), the checkpoint's pooler, which is what transformers' `BertForSequenceClassification`
 *   computes, so only this one pulls back into transformers (`tempered models pull`).
 */
export const POOLINGS = ['cls', 'mean', 'pooler'] as const;
export type Pooling = (typeof POOLINGS)[number];
