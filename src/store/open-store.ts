/**
 * Which store a process uses: `TEMPERED_STORE` unset keeps everything in the local folder (the
 * default, one machine); `s3://bucket/prefix` shares artifacts, training checkpoints and stage-cache
 * records (these in the database instead when there is one: open-stage-cache.ts) through any
 * S3-compatible store; an absolute path or `file:///path` shares them through
 * a folder every host mounts. In the shared cases the local folder is this worker's verified cache.
 */
import { statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputError } from '../errors.ts';
import { ArtifactStore } from './artifact-store.ts';
import { FolderBackend } from './folder-backend.ts';
import type { ObjectBackend } from './object-backend.ts';
import { S3Backend, type S3BackendOptions } from './s3-backend.ts';

/** The backend a `TEMPERED_STORE` value names, or undefined for the local folder alone. */
export function openBackend(url: string | undefined, opts: S3BackendOptions = {}): ObjectBackend | undefined {
  if (url === undefined || url.trim() === '') return undefined;
  if (url.startsWith('s3://')) return new S3Backend(url, opts);
  if (url.startsWith('file://')) return sharedFolder(fileURLToPath(url));
  if (isAbsolute(url)) return sharedFolder(url);
  throw new InputError(`TEMPERED_STORE=${url} is not a store URL`, {
    where: 'TEMPERED_STORE',
    hint: 'use s3://bucket/prefix, an absolute folder path (file:///path), or unset it for the local folder store',
  });
}

/**
 * A shared folder must be there already: one that is missing is most often a share that is not
 * mounted, and creating it would fill this host's own disk with what the others cannot see.
 */
function sharedFolder(path: string): FolderBackend {
  let dir = false;
  try {
    dir = statSync(path).isDirectory();
  } catch {
    // reported below
  }
  if (!dir)
    throw new InputError(`the shared store folder ${path} does not exist or is not a folder`, {
      where: 'TEMPERED_STORE',
      hint: 'mount the share, or create the folder on it; name a folder inside the share (/mnt/share/tempered, not the mount point /mnt/share, which exists unmounted too)',
    });
  return new FolderBackend(path);
}

/** The artifact store for the local folder `root`, backed by `TEMPERED_STORE` when set. */
export function openArtifactStore(root: string, url: string | undefined = process.env.TEMPERED_STORE): ArtifactStore {
  return new ArtifactStore(root, { remote: openBackend(url) });
}
