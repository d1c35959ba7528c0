/**
 * A local model folder is hostile input like any model file: a folder made by someone else (an
 * unpacked download, a share a teammate filled) can hold `tokenizer_config.json -> ~/.docker/config.json`
 * or `vocab.txt -> /proc/self/environ`. tempered copies tokenizer and config files into the trained
 * model's folder, which goes to the (shared) store, and quotes bad files in errors, so a link that
 * leads out of the folder would carry the worker's files to whoever submitted the run. A FIFO or a
 * device in place of a file would hang the stage that reads it.
 *
 * So before a local folder is read, every entry in it (and in its subfolders) must be a regular file
 * or folder, and a symlink must lead to one inside the folder, inside the repository folder of a
 * Hugging Face cache snapshot (`models--org--name/snapshots/REV/x -> ../../blobs/…`), or inside a
 * folder the worker allows: `TEMPERED_HOME` or one listed in `TEMPERED_DATA_ROOTS`; for a pipeline's model on a worker
 * that lists its roots, those roots alone (`linkRoots`: its state folder holds other teams' models, under `serving/`).
 * A `.gguf` file may be a link to a file anywhere (below; a pipeline's GGUF file is confined where it is resolved).
 */
import { lstatSync, readdirSync, realpathSync, statSync, type Stats } from 'node:fs';
import { basename, delimiter, dirname, join, relative, resolve } from 'node:path';
import { InputError } from '../errors.ts';
import { DATA_ROOTS_ENV, isInside, realRoots } from '../data/roots.ts';

/** Bounds on the walk, so a folder of millions of files is refused rather than walked. */
export const FOLDER_WALK_LIMITS = { maxEntries: 20_000, maxDepth: 8 };

/** The folders a link in `realDir` may lead into; `linkRoots`, where given, instead of TEMPERED_HOME and TEMPERED_DATA_ROOTS. */
function allowedRoots(realDir: string, env: NodeJS.ProcessEnv, linkRoots: readonly string[] | undefined): string[] {
  const roots = [realDir];
  // huggingface_hub's cache: models--org--name/snapshots/<revision>/<file> links to models--org--name/blobs/<hash>.
  const snapshots = dirname(realDir);
  if (basename(snapshots) === 'snapshots' && basename(dirname(snapshots)).startsWith('models--')) roots.push(dirname(snapshots));
  const extra =
    linkRoots ?? [env.TEMPERED_HOME, ...(env[DATA_ROOTS_ENV] ?? '').split(delimiter)].filter((r): r is string => !!r && r.trim() !== '');
  return [...roots, ...realRoots(extra.map((r) => resolve(r.trim())))];
}

function kindOf(st: Stats): string | undefined {
  if (st.isFile() || st.isDirectory()) return undefined;
  if (st.isFIFO()) return 'a named pipe';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/**
 * The files tempered may read beside a model: an ONNX file's folder is checked for these only, since it
 * can be any folder (a home folder holding model.onnx).
 */
export const MODEL_SIDE_FILES = [
  'config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'vocab.txt',
  'chat_template.jinja',
  'generation_config.json',
  'tempered-model.json',
];

/**
 * Throws an InputError naming the first entry of the folder `dir` that is a special file or a symlink
 * leading outside the allowed folders: every entry, subfolders included, or only `names` when given.
 * Links are not followed into (a linked folder is judged by where it lies), so a link loop cannot make
 * the walk endless.
 */
export function checkModelFolder(
  dir: string,
  opts: { names?: readonly string[]; env?: NodeJS.ProcessEnv; linkRoots?: readonly string[] } = {},
): void {
  const realDir = realpathSync(dir);
  const roots = allowedRoots(realDir, opts.env ?? process.env, opts.linkRoots);
  const hint = `copy the file into the folder (\`cp -L\`), or add the folder it lies in to ${DATA_ROOTS_ENV} on the worker (folders separated by '${delimiter}')`;
  const fileHint = 'put the model file itself there';
  const check = (path: string, st: Stats): void => {
    const shown = relative(realDir, path);
    if (st.isSymbolicLink()) {
      let target: string;
      try {
        target = realpathSync(path);
      } catch {
        return; // A broken link reads as a missing file, named by whatever needs it.
      }
      const special = kindOf(statSync(target));
      if (special) throw new InputError(`${shown} leads to ${target}, ${special}, not a file`, { where: dir, hint: fileHint });
      // A GGUF file may lie anywhere: the model cache's own folders link to the file the user named, and
      // what tempered takes from one (weights, metadata) comes only from a file that parses as GGUF. Not in a
      // confined folder (`linkRoots`): config.json's gguf_file takes the weights from such a link, wherever it leads.
      if (!isInside(target, roots) && !(path.endsWith('.gguf') && !opts.linkRoots))
        throw new InputError(`${shown} is a symlink to ${target}, outside the model folder`, { where: dir, hint });
      return;
    }
    const special = kindOf(st);
    if (special) throw new InputError(`${shown} is ${special}, not a file`, { where: dir, hint: fileHint });
  };
  if (opts.names) {
    for (const name of opts.names) {
      let st: Stats;
      try {
        st = lstatSync(join(realDir, name));
      } catch {
        continue;
      }
      check(join(realDir, name), st);
    }
    return;
  }
  let entries = 0;
  const walk = (abs: string, depth: number): void => {
    for (const ent of readdirSync(abs, { withFileTypes: true })) {
      if (++entries > FOLDER_WALK_LIMITS.maxEntries)
        throw new InputError(`the model folder holds more than ${FOLDER_WALK_LIMITS.maxEntries} entries`, {
          where: dir,
          hint: 'name a folder that holds one model (config.json, tokenizer and weight files)',
        });
      const path = join(abs, ent.name);
      if (ent.isDirectory()) {
        // Refused rather than left unchecked: what is below would not be judged at all.
        if (depth >= FOLDER_WALK_LIMITS.maxDepth)
          throw new InputError(`the model folder nests folders deeper than ${FOLDER_WALK_LIMITS.maxDepth} (${relative(realDir, path)})`, {
            where: dir,
            hint: 'name a folder that holds one model (config.json, tokenizer and weight files)',
          });
        walk(path, depth + 1);
      } else check(path, lstatSync(path));
    }
  };
  walk(realDir, 0);
}
