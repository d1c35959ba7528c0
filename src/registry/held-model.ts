/**
 * Whether an alias already serves a version's model, decided one way for every path that moves an alias (a run's
 * deploy, `models promote` with or without a gate, the dashboard) and for the hold a rollback puts on a model: by the
 * model's bytes, not the version number. A run's register stage makes the same bytes the same version, but versions
 * registered before it did so, or through the library without `reuseVersionWithSame`, can share them. Two versions are
 * one model when their model folders (`model`, what register deduplicates on) have one hash, or, where either has
 * none (a version registered through the library with its `onnx` file alone), when all their artifacts do, role by
 * role: Registry.sameModel, in SQL, so a write transaction decides it on one row.
 */
import type { AliasChange } from './types.ts';

/** The alias serves the model of `version` already: through `version` itself or `holder`, another with its bytes. */
export interface HeldModel {
  alias: string;
  version: number;
  holder: number;
}

/** What every path says when nothing moves because the alias serves the model already. */
export function heldMessage(h: HeldModel, gated: boolean): string {
  const judged = gated ? ', and no gate judged it against itself' : '';
  return h.holder === h.version
    ? `v${h.version} is already ${h.alias}: nothing to promote${judged}`
    : `${h.alias} is v${h.holder}, which has the same model bytes as v${h.version}: nothing to promote${judged}; ${h.alias} stays on v${h.holder}`;
}

/**
 * The rollback that took `version`'s model off the alias (from it, or from another version with its bytes), when
 * nothing has put that model back since: a promotion, or a later rollback that landed on it. `history` oldest first;
 * `isModel` says whether a version has `version`'s model bytes.
 */
export function rollbackHolding(history: readonly AliasChange[], isModel: (version: number) => boolean): AliasChange | undefined {
  for (let i = history.length - 1; i >= 0; i--) {
    const h = history[i]!;
    if (isModel(h.toVersion)) return undefined;
    if (h.kind === 'rollback' && h.fromVersion !== null && isModel(h.fromVersion)) return h;
  }
  return undefined;
}

/**
 * The versions an alias went through that a rollback walks back along, oldest first: its history replayed as a stack
 * (a `set` pushes, a `rollback` pops). The last is the holder; a rollback goes to the one below it.
 */
export function aliasStack(history: readonly AliasChange[]): number[] {
  const stack: number[] = [];
  for (const h of history) {
    if (h.kind === 'set') stack.push(h.toVersion);
    else stack.pop();
  }
  return stack;
}

/**
 * What a rollback says when the version it went back to has the model bytes of the one it left: the alias moved, but
 * what it serves did not change (a history written before a version's twin was refused as already held can hold two
 * such versions one after the other). `next`: where another rollback would go, if anywhere.
 */
export function twinRollbackMessage(
  c: { model: string; alias: string; fromVersion: number; toVersion: number },
  next: number | undefined,
): string {
  const again = `tempered models rollback ${c.model}${c.alias === 'production' ? '' : ` --alias ${c.alias}`}`;
  return (
    `v${c.toVersion} has the same model bytes as v${c.fromVersion}: what ${c.alias} serves has not changed; ` +
    (next === undefined
      ? `${c.alias} has no earlier version to roll back to: promote another version to change it`
      : `\`${again}\` again goes back to v${next}`)
  );
}
