/**
 * `npm run bench [-- <section> ...]`: runs the named benchmark sections, or all of them.
 *
 * A section is a module in bench/ exporting `run(): Promise<void>` that prints its own
 * comparison. To add one, add a line to `sections` below (keep the import lazy, so running
 * one section does not load the others).
 *
 *   npm run bench                 # every section
 *   npm run bench -- kernels      # only the WASM kernels vs their TypeScript twins
 *
 * Sections read their own settings from the environment (kernels: BENCH_TIME_MS, BENCH_ROUNDS).
 */

/** A benchmark section: prints its results to stdout. */
export interface BenchSection {
  run(): Promise<void>;
}

const sections: Record<string, () => Promise<BenchSection>> = {
  kernels: () => import('./kernels.js'),
  conflict: () => import('./conflict.js'),
  storage: () => import('./storage.js'),
  codec: () => import('./codec.js'),
  cluster: () => import('./cluster.js'),
  gc: () => import('./gc.js'),
  kv: () => import('./kv.js'),
};

async function main(names: readonly string[]): Promise<void> {
  const unknown = names.filter((name) => !(name in sections));
  if (unknown.length > 0) {
    console.error(
      `Unknown benchmark section ${unknown.join(', ')}; available: ${Object.keys(sections).join(', ')}`,
    );
    process.exitCode = 2;
    return;
  }
  const selected = names.length > 0 ? names : Object.keys(sections);
  console.log(
    `# Benchmarks (${selected.join(', ')}) — Node ${process.version}, ${process.arch}, ` +
      `${new Date().toISOString()}`,
  );
  for (const name of selected) {
    console.log(`\n## ${name}\n`);
    const section = await sections[name]!();
    await section.run();
  }
}

// Words are section names; `--flag=value` arguments are left for the sections to read.
await main(process.argv.slice(2).filter((arg) => !arg.startsWith('-')));
