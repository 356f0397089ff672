/**
 * `--cpus N`, as `git annex p2phttp --cpus N`: how many cores the server uses at once. The
 * JavaScript of a process runs on one core; what else runs at once is libuv's thread pool (file
 * opens, reads and stats, directory scans), which this sizes at N threads instead of 4. The pool
 * starts on its first use, which loading the server already makes, so the command sets it before
 * loading anything (bin/annex-p2phttp.js); the option itself is validated with the others
 * (libs/config options.ts). UV_THREADPOOL_SIZE set in the environment wins.
 *
 * Deliberately free of imports: it runs before anything else is loaded.
 */

/** The value of `--cpus N` or `--cpus=N` in `argv`, if it is a plain number from 1 to 1024. */
export function cpusOption(argv: readonly string[]): number | undefined {
  let text: string | undefined;
  argv.forEach((arg, index) => {
    if (arg === '--cpus') {
      text = argv[index + 1];
    } else if (arg.startsWith('--cpus=')) {
      text = arg.slice('--cpus='.length);
    }
  });
  if (text === undefined || !/^[0-9]{1,4}$/.test(text)) {
    return undefined;
  }
  const cpus = Number(text);
  return cpus >= 1 && cpus <= 1024 ? cpus : undefined;
}

/** Sizes libuv's thread pool from `--cpus` unless the environment sizes it already. */
export function applyCpus(argv: readonly string[], env: NodeJS.ProcessEnv): void {
  const cpus = cpusOption(argv);
  if (cpus !== undefined && (env.UV_THREADPOOL_SIZE ?? '') === '') {
    env.UV_THREADPOOL_SIZE = String(cpus);
  }
}
