/** Registry versions as tests register them, so each test states only what it is about. */
import type { RegisterInput } from './types.ts';

/**
 * A version of `name` whose model artifact is named by `mark` (its sha256 is `mark` 64 times, so two marks
 * are two models), from run `r-<mark>`, with no data or metrics unless `over` gives them.
 */
export function testVersion(name: string, mark: string, over: Partial<RegisterInput> = {}): RegisterInput {
  return {
    name,
    runId: `r-${mark}`,
    stageId: 'register',
    specHash: 's',
    data: [],
    artifacts: [{ role: 'model', uri: 'u', sha256: mark.repeat(64), bytes: 1 }],
    ...over,
  };
}
