/**
 * Summary of a V8 `.cpuprofile` (written by `node --cpu-prof`): self time per function and per
 * owner (our code, each dependency, Node core, V8 builtins, GC, idle), restricted to a time
 * window so that start-up and shutdown do not blur the measured load.
 *
 * The profile samples only the main JavaScript thread. Time in libuv's thread pool (fsync,
 * writev) is not in it; while the main thread waits for such work it shows as `(idle)`.
 */
import { basename } from 'node:path';

/** The parts of the `.cpuprofile` format this module reads. */
export interface CpuProfile {
  readonly nodes: readonly {
    readonly id: number;
    readonly callFrame: {
      readonly functionName: string;
      readonly url: string;
      readonly lineNumber: number;
      readonly columnNumber: number;
    };
    readonly children?: readonly number[];
  }[];
  /** Microseconds, V8's monotonic clock (CLOCK_MONOTONIC on Linux, like process.hrtime). */
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Self time of one function. */
export interface FunctionTime {
  readonly name: string;
  readonly location: string;
  readonly category: string;
  readonly selfMs: number;
}

/** The summary of one profile over a window. */
export interface ProfileSummary {
  /** Wall time covered by the samples kept. */
  readonly sampledMs: number;
  /** Whether the window matched the profile's clock; false means the whole profile was used. */
  readonly windowApplied: boolean;
  /** Self time by raw category of the sampled frame. */
  readonly byCategory: ReadonlyMap<string, number>;
  /**
   * Self time by owner: a V8 builtin, WASM or Node core frame is charged to the nearest caller
   * that is our code or a dependency (e.g. JSON.parse called by cbor-x counts as cbor-x, and
   * undici's WASM HTTP parser counts as undici).
   */
  readonly byOwner: ReadonlyMap<string, number>;
  readonly topSelf: readonly FunctionTime[];
  /** Inclusive (self + callees) time of our own functions. */
  readonly topOursInclusive: readonly FunctionTime[];
}

/**
 * The category of a frame: `ours: <module>` for our dist/, the package name for a dependency,
 * `node: <module>` for Node core, `wasm` for WebAssembly, `V8 builtin / native` for frames
 * without a script, and V8's pseudo frames `(idle)`, `(garbage collector)`, `(program)`.
 */
export function categorize(url: string, functionName: string, repoRoot: string): string {
  if (url === '') {
    if (functionName === '(idle)') return 'idle';
    if (functionName === '(garbage collector)') return 'GC';
    if (functionName === '(program)') return 'program (native, not attributed)';
    if (functionName === '(root)') return 'root';
    return 'V8 builtin / native';
  }
  // Both our kernels and undici's HTTP parser (llhttp) are WASM without function names; the
  // owner view charges a WASM frame to its JavaScript caller, which tells them apart.
  if (url.startsWith('wasm://')) return 'wasm';
  const path = url.startsWith('file://') ? decodeURIComponent(url.slice('file://'.length)) : url;
  const modules = path.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const rest = path.slice(modules + '/node_modules/'.length).split('/');
    const name = rest[0]!.startsWith('@') ? `${rest[0]!}/${rest[1] ?? ''}` : rest[0]!;
    if (name === 'uWebSockets.js' || name.includes('uws')) return 'uWebSockets.js';
    return name;
  }
  if (path.startsWith(repoRoot)) {
    const inside = path.slice(repoRoot.length).split('/');
    if (inside[0] === 'dist' || inside[0] === 'src') {
      return `ours: ${inside.length > 2 ? inside[1]! : basename(inside[1] ?? '', '.js')}`;
    }
    return `ours: ${inside[0] ?? ''}`;
  }
  if (url.startsWith('node:')) {
    const parts = url.slice('node:'.length).split('/');
    const module = parts[0] === 'internal' ? (parts[1] ?? 'internal') : parts[0]!;
    return `node: ${module.replace(/\.js$/, '')}`;
  }
  return 'other';
}

function isOwner(category: string): boolean {
  return (
    !category.startsWith('node: ') &&
    category !== 'V8 builtin / native' &&
    category !== 'wasm' &&
    category !== 'other' &&
    category !== 'root' &&
    category !== 'program (native, not attributed)' &&
    category !== 'GC' &&
    category !== 'idle'
  );
}

/**
 * Summarizes `profile` over `[windowStartUs, windowEndUs]` (the profile's monotonic clock).
 * When the window does not overlap the profile (another clock), the whole profile is used.
 */
export function summarizeProfile(
  profile: CpuProfile,
  repoRoot: string,
  windowStartUs?: number,
  windowEndUs?: number,
  top = 25,
): ProfileSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes)
    for (const child of node.children ?? []) parentOf.set(child, node.id);
  const categoryOf = new Map<number, string>();
  for (const node of profile.nodes) {
    categoryOf.set(node.id, categorize(node.callFrame.url, node.callFrame.functionName, repoRoot));
  }
  const ownerOf = (id: number): string => {
    const own = categoryOf.get(id)!;
    if (own === 'GC' || own === 'idle' || own.startsWith('program')) return own;
    for (let at: number | undefined = id; at !== undefined; at = parentOf.get(at)) {
      const category = categoryOf.get(at)!;
      if (isOwner(category)) return category;
    }
    return own;
  };

  // Sample i lasts until sample i + 1 (as Chrome DevTools counts it).
  const times: number[] = [];
  let clock = profile.startTime;
  for (const delta of profile.timeDeltas) {
    clock += delta;
    times.push(clock);
  }
  const overlaps =
    windowStartUs !== undefined &&
    windowEndUs !== undefined &&
    windowStartUs < profile.endTime &&
    windowEndUs > profile.startTime;
  const from = overlaps ? windowStartUs : -Infinity;
  const to = overlaps ? windowEndUs : Infinity;

  const selfUs = new Map<number, number>();
  const inclusiveUs = new Map<string, number>();
  let sampledUs = 0;
  for (let i = 0; i < profile.samples.length - 1; i++) {
    const at = times[i]!;
    if (at < from || at >= to) continue;
    const duration = times[i + 1]! - at;
    const id = profile.samples[i]!;
    sampledUs += duration;
    selfUs.set(id, (selfUs.get(id) ?? 0) + duration);
    const seen = new Set<string>();
    for (let node: number | undefined = id; node !== undefined; node = parentOf.get(node)) {
      if (!categoryOf.get(node)!.startsWith('ours')) continue;
      const key = functionKey(byId.get(node)!.callFrame, repoRoot);
      if (seen.has(key)) continue;
      seen.add(key);
      inclusiveUs.set(key, (inclusiveUs.get(key) ?? 0) + duration);
    }
  }

  const byCategory = new Map<string, number>();
  const byOwner = new Map<string, number>();
  const byFunction = new Map<string, { frame: FunctionTime; us: number }>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    const category = categoryOf.get(id)!;
    byCategory.set(category, (byCategory.get(category) ?? 0) + us / 1000);
    const owner = ownerOf(id);
    byOwner.set(owner, (byOwner.get(owner) ?? 0) + us / 1000);
    const key = functionKey(node.callFrame, repoRoot);
    const entry = byFunction.get(key);
    if (entry === undefined) {
      byFunction.set(key, {
        frame: { ...describe(node.callFrame, repoRoot), category, selfMs: 0 },
        us,
      });
    } else {
      entry.us += us;
    }
  }
  const topSelf = [...byFunction.values()]
    .map(({ frame, us }) => ({ ...frame, selfMs: us / 1000 }))
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, top);
  const topOursInclusive = [...inclusiveUs.entries()]
    .map(([key, us]) => {
      const [name, location] = key.split('\u0000') as [string, string];
      return { name, location, category: 'ours', selfMs: us / 1000 };
    })
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, top);
  return {
    sampledMs: sampledUs / 1000,
    windowApplied: overlaps,
    byCategory: sortedMap(byCategory),
    byOwner: sortedMap(byOwner),
    topSelf,
    topOursInclusive,
  };
}

function describe(
  frame: CpuProfile['nodes'][number]['callFrame'],
  repoRoot: string,
): { name: string; location: string } {
  let location = frame.url;
  if (location.startsWith('file://')) location = decodeURIComponent(location.slice(7));
  if (location.startsWith(repoRoot)) location = location.slice(repoRoot.length);
  location = location.replace(/^.*\/node_modules\//, '');
  return {
    name: frame.functionName === '' ? '(anonymous)' : frame.functionName,
    location: location === '' ? '' : `${location}:${frame.lineNumber + 1}`,
  };
}

function functionKey(frame: CpuProfile['nodes'][number]['callFrame'], repoRoot: string): string {
  const { name, location } = describe(frame, repoRoot);
  return `${name}\u0000${location}`;
}

function sortedMap(map: Map<string, number>): Map<string, number> {
  return new Map([...map.entries()].sort((a, b) => b[1] - a[1]));
}
