#!/usr/bin/env node
/**
 * The `phantomdb` command (`npm start`): runs one node until SIGTERM or SIGINT.
 *
 * Exit codes: 0 after a graceful stop, 1 when the node cannot start (data directory locked
 * or corrupt, address taken) or fails unexpectedly, 2 for bad flags. The first SIGTERM /
 * SIGINT stops gracefully (see PhantomNode.stop); a second one exits at once with 128 + the
 * signal number, as a shell reports a killed process.
 */
import type { Logger } from 'pino';
import { ConfigError, helpText, parseNodeConfig } from './config.js';
import { createNodeLogger } from './logger.js';
import { PhantomNode } from './node.js';

const signalNumbers: Readonly<Record<'SIGINT' | 'SIGTERM', number>> = { SIGINT: 2, SIGTERM: 15 };

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseNodeConfig(process.argv.slice(2), process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`phantomdb: ${error.message}\n`);
    process.exit(2);
  }
  if (parsed.help) {
    process.stdout.write(helpText());
    return;
  }
  const { config } = parsed;
  if (config.security.secretsInArgv.length > 0) {
    // Overwrites the argv that `ps` and /proc/<pid>/cmdline show, secrets included.
    process.title = `phantomdb ${config.id}`;
  }
  const logger = createNodeLogger(config.id, config.logLevel);
  watchForBugs(logger);

  let node: PhantomNode;
  try {
    node = await PhantomNode.start(config, { logger });
  } catch (error) {
    logger.fatal({ err: error }, `Cannot start: ${(error as Error).message}`);
    process.exit(1);
  }

  let stopping = false;
  const onSignal = (signal: 'SIGINT' | 'SIGTERM'): void => {
    if (stopping) {
      logger.warn({ signal }, `${signal} again: exiting at once`);
      process.exit(128 + signalNumbers[signal]);
    }
    stopping = true;
    logger.info({ signal }, `${signal}: stopping gracefully (send it again to exit at once)`);
    node.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.fatal({ err: error }, 'Graceful stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
}

/** A throw nobody caught is our bug: say so in the log, then crash loudly. */
function watchForBugs(logger: Logger): void {
  process.on('uncaughtException', (error) => {
    logger.fatal({ err: error }, `Uncaught exception: ${error.message}`);
    process.exit(1);
  });
  process.on('unhandledRejection', (reason) => {
    logger.fatal({ err: reason }, 'Unhandled promise rejection');
    process.exit(1);
  });
}

await main();
