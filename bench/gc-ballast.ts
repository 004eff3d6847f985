/**
 * For bench/gc.ts's child (`--ballast=<kinds>`): attaches a non-enumerable 8 KB array
 * to every object of the chosen kinds, so that each one kept past a scavenge adds 8 KB to the
 * bytes the scavenger copies. Comparing the survived and promoted bytes per command with and
 * without it tells whether objects of that kind outlive a scavenge, without relying on a heap
 * profiler's view of survival. Non-enumerable, so spreads and validation do not see it.
 */
import { RaftConsensus } from '../src/consensus/raft-consensus.js';
import { RaftCore } from '../src/raft/core.js';
import type { Message } from '../src/raft/types.js';
import { MemoryPersistence } from '../src/storage/memory.js';

/** What can carry the ballast, each with where it is attached. */
export const ballastKinds = {
  ready: 'each Ready the cores build',
  readyMessages: "each message of a Ready (leaders' requests)",
  stepped: 'each message a core steps (copies of requests, responses)',
  responses: "each answer a follower's handleMessage resolves with",
  requests: "each request handed to handleMessage (the sender's object)",
  updates: 'each persistence update',
  results: 'each submitCommand result',
} as const;

export type BallastKind = keyof typeof ballastKinds;

const ballastBytes = 8 * 1024;

function attach(target: unknown): void {
  if (typeof target !== 'object' || target === null || !Object.isExtensible(target)) return;
  Object.defineProperty(target, '__ballast', {
    value: new Array<number>(ballastBytes / 8).fill(0),
    configurable: true,
  });
}

/** Wraps `prototype[name]` so that `after` sees its arguments and result. */
function wrap<T extends object>(
  prototype: T,
  name: string,
  after: (result: unknown, args: unknown[]) => unknown,
): void {
  const methods = prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  const original = methods[name]!;
  methods[name] = function (this: unknown, ...args: unknown[]) {
    return after(original.apply(this, args), args);
  };
}

export function installBallast(kinds: readonly BallastKind[]): void {
  const chosen = new Set(kinds);
  if (chosen.has('ready') || chosen.has('readyMessages')) {
    wrap(RaftCore.prototype, 'ready', (ready) => {
      if (chosen.has('ready')) attach(ready);
      if (chosen.has('readyMessages')) {
        for (const message of (ready as { messages: Message[] }).messages) attach(message);
      }
      return ready;
    });
  }
  if (chosen.has('stepped')) {
    wrap(RaftCore.prototype, 'step', (result, args) => {
      attach(args[0]);
      return result;
    });
  }
  if (chosen.has('requests') || chosen.has('responses')) {
    wrap(RaftConsensus.prototype, 'handleMessage', (answer, args) => {
      if (chosen.has('requests')) attach(args[0]);
      if (!chosen.has('responses')) return answer;
      return (answer as Promise<Message | null>).then((response) => {
        attach(response);
        return response;
      });
    });
  }
  if (chosen.has('updates')) {
    wrap(MemoryPersistence.prototype, 'save', (saved, args) => {
      attach(args[0]);
      return saved;
    });
  }
  if (chosen.has('results')) {
    wrap(RaftConsensus.prototype, 'submitCommand', (result) =>
      (result as Promise<unknown>).then((value) => {
        attach(value);
        return value;
      }),
    );
  }
}
