/**
 * HTTPS with `--certfile`/`--privatekeyfile` and `--authenv`: a self-signed certificate made by
 * openssl, a real TLS client. Anonymous requests are asked for credentials, a known user gets in,
 * GET bodies arrive intact over TLS, and plain HTTP on the same port is refused.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import * as https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basicAuth } from './api';
import {
  fileDigest,
  freePort,
  isReference,
  keyOf,
  makeServedRepo,
  PROJECT_BIN,
  Sandbox,
  type ServedRepo,
} from './harness';
import { createHash } from 'node:crypto';

let sandbox: Sandbox;
let served: ServedRepo;
let child: ChildProcess | undefined;
let port: number;
let output = '';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function tlsRequest(method: string, path: string, headers: http.OutgoingHttpHeaders = {}) {
  return new Promise<Answer>((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, method, path, headers, rejectUnauthorized: false, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe.skipIf(isReference())('https', () => {
  beforeAll(async () => {
    sandbox = await Sandbox.create('https');
    served = await makeServedRepo(sandbox, sandbox.path('served'), [
      { path: 'data.bin', size: 300_000 },
    ]);
    const cert = sandbox.path('cert.pem');
    const key = sandbox.path('key.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=127.0.0.1',
        '-keyout',
        key,
        '-out',
        cert,
      ],
      { stdio: 'ignore' },
    );
    port = await freePort();
    child = spawn(
      process.execPath,
      [
        PROJECT_BIN,
        'serve',
        '--repo',
        served.dir,
        '--bind',
        '127.0.0.1',
        '--port',
        String(port),
        '--certfile',
        cert,
        '--privatekeyfile',
        key,
        '--authenv',
      ],
      {
        env: sandbox.env({ GIT_ANNEX_P2PHTTP_PASSWORD_alice: 's3cret' }),
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no start within 20 s: ${output}`)), 20_000);
      child!.stderr!.on('data', (chunk: Buffer) => {
        output += chunk.toString('utf8');
        if (output.includes(`listening on https://127.0.0.1:${port}`)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child!.once('exit', (code) => reject(new Error(`server exited ${code}: ${output}`)));
    });
  });

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    await sandbox?.remove();
  });

  const path = (op: string) =>
    `/git-annex/${served.uuid}/v4/${op}?clientuuid=5a5a5a5a-0000-0000-0000-000000000001&key=${encodeURIComponent(keyOf(served, 'data.bin'))}`;

  it('asks anonymous callers for credentials and lets a known user in', async () => {
    const anonymous = await tlsRequest('POST', path('checkpresent'));
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers['www-authenticate']).toMatch(/^Basic realm="git-annex"/);
    const wrong = await tlsRequest('POST', path('checkpresent'), {
      authorization: basicAuth('alice', 'nope'),
    });
    expect(wrong.status).toBe(401);
    const alice = await tlsRequest('POST', path('checkpresent'), {
      authorization: basicAuth('alice', 's3cret'),
    });
    expect(alice.status).toBe(200);
    expect(JSON.parse(alice.body.toString('utf8'))).toEqual({ present: true });
  });

  it('sends GET bodies intact over TLS', async () => {
    const key = keyOf(served, 'data.bin');
    const answer = await tlsRequest(
      'GET',
      `/git-annex/${served.uuid}/v4/key/${encodeURIComponent(key)}?clientuuid=5a5a5a5a-0000-0000-0000-000000000001`,
      { authorization: basicAuth('alice', 's3cret') },
    );
    expect(answer.status).toBe(200);
    const expected = await fileDigest(served.dir + '/data.bin');
    expect(answer.body.length).toBe(expected.size);
    expect(createHash('sha256').update(answer.body).digest('hex')).toBe(expected.sha256);
  });

  it('does not answer plain HTTP on the TLS port', async () => {
    const outcome = await new Promise<string>((resolve) => {
      const req = http.request(
        { host: '127.0.0.1', port, method: 'POST', path: path('checkpresent'), agent: false },
        (res) => {
          res.resume();
          resolve(`status ${res.statusCode}`);
        },
      );
      req.on('error', (error) => resolve(`error ${error.message}`));
      req.setTimeout(5000, () => req.destroy(new Error('timeout')));
      req.end();
    });
    expect(outcome).not.toBe('status 200');
  });
});
