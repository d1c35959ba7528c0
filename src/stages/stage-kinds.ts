/**
 * The stage kinds this build provides, plus those tempered knows of but does not ship yet (the spec
 * validator rejects those with "not available in this version"). Extra kinds can be plugged in
 * with TEMPERED_PLUGINS: a comma-separated list of modules exporting `stageKinds(): StageKind[]`
 * (plugin-kinds.ts; docs/plugins.md).
 */
import type { KindRegistry, StageKindInfo } from '../spec/types.ts';
import type { AnyStageKind } from './types.ts';
import { loadPluginKinds, pluginList } from './plugin-kinds.ts';

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

export async function loadStageKinds(): Promise<Map<string, AnyStageKind>> {
  const builtins = await builtinKinds();
  const map = new Map<string, AnyStageKind>(builtins.map((k) => [k.kind, k]));
  for (const k of await loadPluginKinds(pluginList(), new Set([...map.keys(), ...ALL_KNOWN]))) map.set(k.kind, k);
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
