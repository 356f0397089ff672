#!/usr/bin/env node
'use strict';
/**
 * The container image's HEALTHCHECK: asks GET /healthz of whichever app the container runs, on
 * the port that app listens on, read from the container's command line (/proc/1/cmdline, after
 * the `annex-p2phttp` element): serve and gateway on --port (9417), proxy-worker on --data-port
 * (9418), lock-service on --health-port (9419); HTTPS when --certfile is given, the unix socket
 * when --socket is. Exits 0 when the answer is 200, 1 otherwise.
 */
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');

const PORTS = {
  serve: ['--port', 9417],
  gateway: ['--port', 9417],
  'proxy-worker': ['--data-port', 9418],
  'lock-service': ['--health-port', 9419],
};

/** The value of `--name V` or `--name=V` (the first one), or undefined. */
function option(args, name) {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === name && i + 1 < args.length) {
      return args[i + 1];
    }
    if (args[i].startsWith(`${name}=`)) {
      return args[i].slice(name.length + 1);
    }
  }
  return undefined;
}

/**
 * Where to ask /healthz for a container started with `argv` (the whole command line, entrypoint
 * included): `{ url, socketPath? }`, or throws when the command is not an annex-p2phttp app.
 */
function healthTarget(argv) {
  const at = argv.findIndex((a) => /(^|\/)annex-p2phttp(\.js)?$/.test(a));
  const args = at >= 0 ? argv.slice(at + 1) : argv;
  const command = args[0];
  if (!Object.prototype.hasOwnProperty.call(PORTS, command)) {
    throw new Error(`not an annex-p2phttp app: ${JSON.stringify(argv.join(' '))}`);
  }
  const [portOption, defaultPort] = PORTS[command];
  const socketPath = portOption === '--port' ? option(args, '--socket') : undefined;
  const tls = portOption === '--port' && option(args, '--certfile') !== undefined;
  const port = Number(option(args, portOption) ?? defaultPort);
  let host = option(args, '--bind') ?? '127.0.0.1';
  if (host === '0.0.0.0' || host === '::') {
    host = '127.0.0.1';
  } else if (host.includes(':')) {
    host = `[${host}]`;
  }
  const url = `${tls ? 'https' : 'http'}://${socketPath ? 'localhost' : `${host}:${port}`}/healthz`;
  return socketPath ? { url, socketPath } : { url };
}

/** Resolves to the HTTP status of GET target.url, or rejects within timeoutMs. */
function probe(target, timeoutMs) {
  return new Promise((resolve, reject) => {
    const client = target.url.startsWith('https:') ? https : http;
    // A self-signed certificate is fine here: this asks the server in the same container.
    const request = client.get(
      target.url,
      { socketPath: target.socketPath, rejectUnauthorized: false, timeout: timeoutMs },
      (response) => {
        response.resume();
        resolve(response.statusCode);
      },
    );
    request.on('timeout', () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    request.on('error', reject);
  });
}

async function main() {
  const argv = fs.readFileSync('/proc/1/cmdline', 'utf8').split('\0').filter(Boolean);
  const target = healthTarget(argv);
  const status = await probe(target, 4000);
  if (status !== 200) {
    throw new Error(`${target.url} answered ${status}`);
  }
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (error) => {
      process.stderr.write(`healthcheck: ${error && error.message ? error.message : error}\n`);
      process.exit(1);
    },
  );
}

module.exports = { healthTarget, probe };
