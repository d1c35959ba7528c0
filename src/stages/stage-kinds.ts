/**
 * The stage kinds this build provides, plus those tempered knows of but does not ship yet (the spec
 * validator rejects those with "not available in this version"). Extra kinds can be plugged in
 * with TEMPERED_PLUGINS: a comma-separated list of modules exporting `stageKinds(): StageKind[]`.
 */
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import type { KindRegistry, StageKindInfo } from '../spec/types.ts';
import type { AnyStageKind } from './types.ts';

const ALL_KNOWN = ['ingest', 'dedupe', 'split', 'train', 'evaluate', 'register', 'deploy'] as const;

async function builtinKinds(): Promise<AnyStageKind[]> {
  const mods = await Promise.all([
    import('./ingest.ts'),
    import('./dedupe.ts'),
    import('./split.ts'),
    import('./train.ts'),
    import('./evaluate.ts'),
    import('./register.ts'),
    import('./deploy.ts'),
  ]);
  return mods.flatMap((m) => m.stageKinds());
}

async function pluginKinds(): Promise<AnyStageKind[]> {
  const list = (process.env.TEMPERED_PLUGINS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const out: AnyStageKind[] = [];
  for (const p of list) {
    const mod = (await import(pathToFileURL(resolve(p)).href)) as { stageKinds?: () => AnyStageKind[] };
    if (typeof mod.stageKinds !== 'function') throw new Error(`TEMPERED_PLUGINS: ${p} exports no stageKinds() function`);
    out.push(...mod.stageKinds());
  }
  return out;
}

export async function loadStageKinds(): Promise<Map<string, AnyStageKind>> {
  const map = new Map<string, AnyStageKind>();
  for (const k of [...(await builtinKinds()), ...(await pluginKinds())]) map.set(k.kind, k);
  return map;
}

/** What the spec validator needs: the kinds' contracts, and which known kinds are missing. */
export function kindRegistry(kinds: ReadonlyMap<string, AnyStageKind>): KindRegistry {
  const infos = new Map<string, StageKindInfo>();
  for (const [name, k] of kinds)
    infos.set(name, {
      kind: k.kind,
      description: k.description,
      withSchema: k.withSchema,
      outputs: k.outputs,
      codeVersion: k.codeVersion,
      check: k.check?.bind(k),
      outputShape: k.outputShape?.bind(k),
      absentOutputs: k.absentOutputs?.bind(k),
    });
  return { kinds: infos, knownButUnavailable: new Set(ALL_KNOWN.filter((k) => !kinds.has(k))) };
}
