/**
 * What a run's own checkpoint name (RunOptions.ownCheckpoints, uncachedCheckpoints) may be: it names a folder under the
 * checkpoints folder and a key in a shared store's bucket. submitRun's names are up to 53 characters, the ones the
 * workflow derives from a run id 57 (workflows/run-checkpoints.ts): room to spare.
 */
export const OWN_CHECKPOINTS = /^[A-Za-z0-9_-]{1,64}$/;
