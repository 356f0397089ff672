/**
 * `annex-p2phttp serve [options]`: the embedded server, started like `git annex p2phttp`.
 */
import { ConfigError, parseServeArgs, serveHelp } from '@annex-p2phttp/config';
import { startEmbeddedServer } from './server';

const USAGE = `usage: annex-p2phttp serve [options]

Serves git-annex repositories over git-annex's HTTP P2P API (annex+http:// remotes).
Run "annex-p2phttp serve --help" for the options.`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  if (command !== 'serve') {
    process.stderr.write(`annex-p2phttp: unknown command "${command}"\n${USAGE}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(serveHelp());
    return 0;
  }
  let server;
  try {
    const options = parseServeArgs(rest, process.cwd());
    server = await startEmbeddedServer(options);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`annex-p2phttp: ${message}\n`);
    return error instanceof ConfigError ? 2 : 1;
  }
  for (const url of server.urls) {
    process.stderr.write(`annex-p2phttp: listening on ${url}\n`);
  }
  const running = server;
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.stderr.write(`annex-p2phttp: ${signal}, shutting down\n`);
      running.close().then(resolve, (error: unknown) => {
        process.stderr.write(`annex-p2phttp: shutdown failed: ${String(error)}\n`);
        resolve();
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  // Everything is closed; should some handle still keep the process alive, do not hang.
  setTimeout(() => process.exit(0), 2000).unref();
  return 0;
}
