/**
 * The "ceiling" of the GET benchmarks: a minimal Node static-file server, no framework, no P2P
 * protocol, that answers every GET with one file (`GET /ready` answers "ok"), or with one byte
 * range of it (`Range: bytes=first-last`). It bounds what any Node server can stream on this
 * machine.
 *
 *   node ceiling-server.js FILE PORT
 */
import { createReadStream, statSync } from 'node:fs';
import * as http from 'node:http';
import { pipeline } from 'node:stream';

function main(argv: readonly string[]): void {
  const [file, portText] = argv;
  if (file === undefined || portText === undefined) {
    process.stderr.write('usage: ceiling-server FILE PORT\n');
    process.exit(2);
  }
  const size = statSync(file).size;
  const server = http.createServer((req, res) => {
    if (req.url === '/ready') {
      res.end('ok');
      return;
    }
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (range !== null) {
      const first = Number(range[1]);
      const last = Math.min(Number(range[2]), size - 1);
      res.writeHead(206, {
        'content-type': 'application/octet-stream',
        'content-length': String(last - first + 1),
        'content-range': `bytes ${first}-${last}/${size}`,
      });
      pipeline(createReadStream(file, { start: first, end: last }), res, () => {});
      return;
    }
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': String(size),
      'x-git-annex-data-length': String(size),
    });
    pipeline(createReadStream(file), res, () => {});
  });
  server.listen(Number(portText), '127.0.0.1', () => {
    process.stderr.write(`ceiling: listening on http://127.0.0.1:${portText}/\n`);
  });
  process.once('SIGTERM', () => {
    server.close();
    server.closeAllConnections();
  });
}

main(process.argv.slice(2));
