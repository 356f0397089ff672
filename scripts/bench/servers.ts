/**
 * The benchmark's own server: the "ceiling" static-file server (ceiling-server.ts), for the GET
 * workloads only. The others (the reference, this project embedded and in cluster mode) and the
 * launcher that starts them all are test/support/servers.ts.
 */
import * as path from 'node:path';
import {
  startServer as startAnyServer,
  type RunningServer,
  type ServerSpec,
  type StartOptions,
} from '../../test/support/servers';

/** The minimal Node static-file server (ceiling-server.ts), for the GET workloads only. */
export function ceilingServer(): ServerSpec {
  return {
    id: 'ceiling',
    label: 'ceiling',
    kind: 'ceiling',
    role: 'ceiling',
    command: ({ port, file, repo }) => ({
      file: process.execPath,
      args: [path.join(__dirname, 'ceiling-server.js'), file, String(port)],
      cwd: repo.dir,
    }),
    ready: { method: 'GET', path: () => '/ready' },
  };
}

/**
 * test/support/servers.ts's startServer with the benchmark's habits: the last 256 KiB of output
 * kept, and `stop()` gives SIGTERM 15 s, then SIGKILLs the whole group.
 */
export function startServer(spec: ServerSpec, options: StartOptions): Promise<RunningServer> {
  return startAnyServer(spec, {
    keepOutput: 256 * 1024,
    stop: { graceMs: 15_000, sweepGroup: true },
    ...options,
  });
}
