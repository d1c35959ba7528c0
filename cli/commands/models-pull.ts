/**
 * What `models pull` says after the files it wrote: how transformers loads the folder, or why it cannot
 * (src/models/transformers-folder.ts writes the weights).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TransformersExport } from '../../src/models/transformers-folder.ts';

/**
 * The lines after the file list: how transformers loads the folder, or why it cannot, and the adapter on its base with
 * the Auto class of its PEFT task (a classifier's adapter is SEQ_CLS, not a causal LM's). A classifier with no
 * transformers form has none through its adapter either: BertForSequenceClassification under it still pools with its
 * pooler, so the adapter is named without the line that would load it.
 */
export function pullNotes(dest: string, files: string[], hf: TransformersExport | undefined): string[] {
  if (hf && 'refused' in hf)
    return [
      hf.refused,
      ...(files.includes(join('adapter', 'adapter_config.json'))
        ? ['adapter/ (the LoRA adapter in PEFT layout) on BertForSequenceClassification gives other logits too, for the same reason']
        : []),
    ];
  const notes = hf
    ? [`model.safetensors holds the fine-tune's weights (float32, any LoRA merged) for transformers: ${hf.auto}.from_pretrained('${dest}')`]
    : [];
  if (files.includes(join('adapter', 'adapter_config.json'))) {
    let task: unknown;
    try {
      task = (JSON.parse(readFileSync(join(dest, 'adapter', 'adapter_config.json'), 'utf8')) as { task_type?: unknown }).task_type;
    } catch {
      // A note only: an adapter_config.json that does not parse gets the causal LM's class.
    }
    const auto = task === 'SEQ_CLS' ? 'AutoModelForSequenceClassification' : 'AutoModelForCausalLM';
    notes.push(
      'the LoRA adapter in PEFT layout is adapter/; in Python, on the base model it was trained from:',
      `  PeftModel.from_pretrained(${auto}.from_pretrained(BASE, dtype=torch.float32), '${join(dest, 'adapter')}')`,
    );
  }
  return notes;
}
