/**
 * The node's structured log: pino, one JSON object per line on stdout, every line tagged with
 * the node id. Lines are written synchronously, so the last words of a node that stops (or
 * fails) are not lost in a buffer; the node logs events, not requests, so this costs nothing
 * on the hot path. Pipe the output through `pino-pretty` for a human view.
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import type { NodeConfig } from './config.js';

/** Creates the logger of node `id` at `level`; `destination` defaults to stdout. */
export function createNodeLogger(
  id: string,
  level: NodeConfig['logLevel'],
  destination?: DestinationStream,
): Logger {
  const options = {
    level,
    base: { node: id, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination === undefined
    ? pino(options, pino.destination({ fd: 1, sync: true }))
    : pino(options, destination);
}
