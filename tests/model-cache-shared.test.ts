// TEMPERED_MODEL_CACHE shared by several state folders: a second home finds the model the first one downloaded
// instead of downloading it again (here offline, where a second download is impossible).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { statePaths } from '../src/state-paths.ts';
import { realModel, testModelCache } from '../src/models/real-models.testing.ts';
import { DEFAULT_LLM } from '../src/models/sources.ts';
import { runCli } from './helpers/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'tempered-model-cache-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('TEMPERED_MODEL_CACHE moves the model cache out of the home; unset or blank, it stays in it', () => {
  assert.equal(statePaths('/h', {}).models, '/h/models');
  assert.equal(statePaths('/h', { TEMPERED_MODEL_CACHE: ' ' }).models, '/h/models');
  assert.equal(statePaths('/h', { TEMPERED_MODEL_CACHE: '/shared/models' }).models, '/shared/models');
  assert.equal(statePaths('/h', { TEMPERED_MODEL_CACHE: 'rel/models' }).models, join(process.cwd(), 'rel/models'));
});

const llm = await realModel(DEFAULT_LLM);
test(
  'a fresh home with TEMPERED_MODEL_CACHE set uses the model already in that cache, offline; without it the model is missing',
  { skip: 'skip' in llm ? llm.skip : false },
  async () => {
    const home = join(dir, 'second-home');
    const offline = { TEMPERED_HOME: home, TEMPERED_OFFLINE: '1', HF_HUB_OFFLINE: '1' };
    const args = ['generate', DEFAULT_LLM, 'Say hi.', '--max-tokens', '1', '--threads', '1'];
    const shared = await runCli(args, { ...offline, TEMPERED_MODEL_CACHE: testModelCache() });
    assert.equal(shared.code, 0, shared.stderr);
    assert.match(shared.stderr, /1 new/);
    const own = await runCli(args, { ...offline, TEMPERED_MODEL_CACHE: undefined });
    assert.notEqual(own.code, 0);
    assert.match(own.stderr, new RegExp(join(home, 'models').replace(/[/.]/g, '\\$&')));
  },
);
