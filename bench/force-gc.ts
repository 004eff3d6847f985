/**
 * A forced full garbage collection, for benchmarks whose figures are heap sizes: they must be
 * live data, not garbage not yet collected. Exposed at run time, so no `--expose-gc` is needed
 * on the command line.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');

/** Runs a full collection now. */
export const forceGc = runInNewContext('gc') as () => void;
