import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MODEL_MANIFEST } from '../finetune/export.ts';
import { tinyLlamaDir } from '../models/tiny.testing.ts';
import { loadPromptEncoder } from './text-generator.ts';

const CHATML =
  '{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}';

test('a fine-tune trained with a system message is asked with it, unless the conversation brings its own', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'text-generator-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const dir = tinyLlamaDir(join(root, 'm'), 1, { hidden: 32, layers: 1, maxPositions: 64 });
  const user = { role: 'user', content: 'hi' };
  assert.equal(
    loadPromptEncoder(dir, CHATML).renderChat([user]),
    '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n',
    'no manifest: as asked',
  );
  writeFileSync(
    join(dir, MODEL_MANIFEST),
    JSON.stringify({ format: 'tempered-model/1', task: 'causal-lm', chat: { template: CHATML, system: 'Answer in one word.' } }),
  );
  const enc = loadPromptEncoder(dir, CHATML);
  assert.equal(
    enc.renderChat([user]),
    '<|im_start|>system\nAnswer in one word.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n',
  );
  assert.equal(
    enc.renderChat([{ role: 'system', content: 'Be verbose.' }, user]),
    '<|im_start|>system\nBe verbose.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n',
  );
  writeFileSync(
    join(dir, MODEL_MANIFEST),
    JSON.stringify({ format: 'tempered-model/1', task: 'causal-lm', chat: { template: CHATML, system: null } }),
  );
  assert.equal(loadPromptEncoder(dir, CHATML).renderChat([user]), '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
});
