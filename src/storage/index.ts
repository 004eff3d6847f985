/**
 * Stable storage for a Raft node: the {@link RaftPersistence} contract, the durable
 * {@link FilePersistence} (segmented WAL + snapshots in a data directory) and the in-memory
 * {@link MemoryPersistence} for tests and the simulator.
 *
 * @example
 * ```ts
 * import { FilePersistence } from './storage/index.js';
 * const storage = new FilePersistence({ dir: './data/n1' });
 * const { hardState, snapshot, log } = await storage.load();
 * ```
 */
export type { PersistedState, PersistUpdate, RaftPersistence, StoredSnapshot } from './types.js';
export { FilePersistence } from './file-persistence.js';
export type { FilePersistenceOptions, RecoveryReport, StorageStats } from './file-persistence.js';
export { nodeFs } from './fs.js';
export type { OpenMode, StorageFile, StorageFs } from './fs.js';
export { MemoryPersistence } from './memory.js';
export type { MemoryPersistenceOptions } from './memory.js';
