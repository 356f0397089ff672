/**
 * The structured log and the ops listener, in both modes, after real authenticated traffic: a
 * git-annex client getting and copying files with a password from `git credential`, requests
 * with a wrong password and malformed ones. Every app writes one JSON object per line (time,
 * level, msg), Nest's own coloured logger prints nothing, every API request has an access-log
 * line naming its route, repository, user and client, and neither the password nor the
 * Authorization header ever appears. With `--ops-listen`, /metrics and /stats are answered there
 * and no longer on the API's port; /healthz and /readyz stay public.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { basicAuth, httpRequest, P2PApi } from './api';
import {
  addAndCommit,
  annex,
  annexUrlFor,
  git,
  isReference,
  killAllTracked,
  makeClientClone,
  makeServedRepo,
  pollUntil,
  PROJECT_BIN,
  PROJECT_ROOT,
  reportServerOutputOnFailure,
  RunningServer,
  Sandbox,
  startServer,
  type ServedRepo,
} from './harness';

const PASSWORD = `pw-${randomBytes(9).toString('hex')}`;
const AUTHORIZATION = basicAuth('alice', PASSWORD);

interface LogLine {
  time: string;
  level: string;
  msg: string;
  app?: string;
  [field: string]: unknown;
}

/** The server's output split into JSON log lines and everything else. */
function parseOutput(output: string): { json: LogLine[]; other: string[] } {
  const json: LogLine[] = [];
  const other: string[] = [];
  for (const line of output.split('\n')) {
    if (line.trim() === '') {
      continue;
    }
    try {
      json.push(JSON.parse(line) as LogLine);
    } catch {
      other.push(line);
    }
  }
  return { json, other };
}

/** Port of the ops listener, from the line the server logs once it listens. */
function opsPort(lines: LogLine[]): number | undefined {
  for (const line of lines) {
    const match = /^\/metrics and \/stats on http:\/\/127\.0\.0\.1:(\d+)$/.exec(line.msg);
    if (match) {
      return Number(match[1]);
    }
  }
  return undefined;
}

for (const kind of ['project', 'cluster'] as const) {
  describe.skipIf(isReference())(`structured log and ops listener (${kind})`, () => {
    let sandbox: Sandbox;
    let served: ServedRepo;
    let server: RunningServer | undefined;
    let ops: number;

    reportServerOutputOnFailure(() => [server]);

    beforeAll(async () => {
      sandbox = await Sandbox.create(`logging-${kind}`);
      served = await makeServedRepo(sandbox, sandbox.path('served'), [
        { path: 'a.bin', size: 50_000 },
      ]);
      server = await startServer({
        sandbox,
        repo: served,
        kind,
        auth: ['--authenv-http'],
        users: { alice: { password: PASSWORD } },
        // Debug level: Nest's own start-up messages come too, through the same log.
        extraArgs: ['--ops-listen', '127.0.0.1:0', '--log-level', 'debug'],
      });
      ops = await pollUntil('the ops listener is announced', () =>
        opsPort(parseOutput(server!.output()).json),
      );
    });

    afterAll(async () => {
      try {
        await server?.stop();
      } finally {
        killAllTracked();
        await sandbox?.remove();
      }
    });

    it('serves /metrics and /stats on the ops listener only, /healthz and /readyz on both', async () => {
      const port = server!.port;
      for (const path of ['/metrics', '/stats']) {
        expect((await httpRequest(port, path, { method: 'GET' })).status, path).toBe(404);
        expect((await httpRequest(ops, path, { method: 'GET' })).status, path).toBe(200);
      }
      for (const path of ['/healthz', '/readyz']) {
        expect((await httpRequest(port, path, { method: 'GET' })).status, path).toBe(200);
        expect((await httpRequest(ops, path, { method: 'GET' })).status, path).toBe(200);
      }
      const metrics = (await httpRequest(ops, '/metrics', { method: 'GET' })).body.toString();
      expect(metrics).toMatch(/^annex_p2phttp_http_requests_total\{/m);
      const stats = JSON.parse(
        (await httpRequest(ops, '/stats', { method: 'GET' })).body.toString(),
      ) as { locks: number };
      expect(stats.locks).toBe(0);
    });

    it('logs JSON lines with an access line per request, and never the password', async () => {
      const client = await makeClientClone(
        sandbox,
        served,
        sandbox.path('client'),
        annexUrlFor(server!.port),
      );
      await git(client, [
        'config',
        'credential.helper',
        `!f() { echo username=alice; echo password=${PASSWORD}; }; f`,
      ]);
      await annex(client, ['get', 'a.bin']);
      await addAndCommit(client, [{ path: 'up.bin', size: 30_000 }]);
      await annex(client, ['copy', '--to', 'origin', 'up.bin']);
      const api = new P2PApi(server!.port, served.uuid);
      const wrong = await api
        .withAuthorization(basicAuth('alice', `${PASSWORD}-wrong`))
        .post('checkpresent', { key: 'SHA256E-s1--00.bin' });
      expect(wrong.status).toBe(401);
      const malformed = await api.withAuthorization(AUTHORIZATION).post('checkpresent', {
        key: 'not a key',
      });
      expect(malformed.status).toBe(400);

      // The access lines are written when each response ends.
      const { json, other } = await pollUntil('the access lines of the requests', () => {
        const parsed = parseOutput(server!.output());
        const lines = parsed.json.filter((l) => l.msg === 'access' && l.route === 'checkpresent');
        return lines.some((l) => l.status === 400) ? parsed : undefined;
      });
      const output = server!.output();

      expect(output).not.toContain(PASSWORD);
      expect(output).not.toContain(AUTHORIZATION.slice('Basic '.length));
      expect(output).not.toMatch(/Basic [A-Za-z0-9+/=]{8,}/);
      expect(output).not.toContain('\u001b[');
      expect(output).not.toMatch(/\[Nest\]/);
      // Lines that are not JSON come from redis-server or the test's cluster launcher (cluster
      // mode), never from our apps.
      for (const line of other) {
        expect(line).toMatch(/^(\d+:[A-Z] |cluster-launcher: )/);
      }
      for (const line of json) {
        expect(typeof line.msg, JSON.stringify(line)).toBe('string');
        expect(['debug', 'info', 'warn', 'error']).toContain(line.level);
        expect(Number.isNaN(Date.parse(line.time)), JSON.stringify(line)).toBe(false);
      }

      const api0 = kind === 'cluster' ? 'gateway' : 'embedded';
      const access = json.filter((l) => l.msg === 'access' && l.app === api0);
      const byAlice = access.filter((l) => l.user === 'alice');
      expect(byAlice.some((l) => l.route === 'get' && l.status === 200)).toBe(true);
      expect(byAlice.some((l) => l.route === 'put' && l.status === 200)).toBe(true);
      for (const line of byAlice) {
        expect(line.repository).toBe(served.uuid);
        expect(line.client).toMatch(/127\.0\.0\.1$/);
        expect(line.method).toMatch(/^(GET|POST)$/);
        for (const field of ['bytesIn', 'bytesOut', 'durationMs', 'status']) {
          expect(typeof line[field], field).toBe('number');
        }
      }
      const get = byAlice.find((l) => l.route === 'get' && l.status === 200)!;
      expect(get.bytesOut as number).toBeGreaterThanOrEqual(50_000);
      const put = byAlice.find((l) => l.route === 'put' && l.status === 200)!;
      expect(put.bytesIn as number).toBeGreaterThanOrEqual(30_000);
      // A wrong password is an anonymous request that was refused.
      expect(
        access.some(
          (l) => l.route === 'checkpresent' && l.status === 401 && l.user === 'anonymous',
        ),
      ).toBe(true);
      // Nest's messages (routes mapped at start) are JSON lines of the same log.
      expect(json.some((l) => l.component === 'nest' && /Mapped \{/.test(l.msg))).toBe(true);
      if (kind === 'cluster') {
        // Every app of the cluster logs the same way (the launcher polls their /readyz).
        for (const app of ['proxy-worker', 'lock-service']) {
          expect(
            json.some((l) => l.app === app && l.msg === 'access' && l.route === 'readyz'),
            app,
          ).toBe(true);
        }
        expect(json.some((l) => l.app === 'proxy-worker' && l.route === 'stream')).toBe(true);
      }
    });
  });
}

/** Runs `node args`; resolves with its exit code and stderr. */
function node(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { timeout: 60_000 }, (error, _stdout, stderr) => {
      resolve({ code: error ? Number(error.code ?? 1) : 0, stderr });
    });
  });
}

describe.skipIf(isReference())('the log on the way out', () => {
  it('writes every line, in order, even when the process exits at once', async () => {
    // Lines are written together once per event-loop turn; none may be lost by an exit.
    const script = `
      const { loggerFor } = require(${JSON.stringify(path.join(PROJECT_ROOT, 'libs/metrics/dist'))});
      const log = loggerFor({ logFormat: 'json' }, 'test');
      for (let i = 0; i < 1000; i++) log.info('line ' + i);
      process.exit(3);`;
    const { code, stderr } = await node(['-e', script]);
    expect(code).toBe(3);
    const lines = stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1000);
    lines.forEach((line, i) => expect((JSON.parse(line) as LogLine).msg).toBe(`line ${i}`));
  });

  it('says why it cannot start, as a JSON error line', async () => {
    const { code, stderr } = await node([PROJECT_BIN, 'serve', '--repo', '/nonexistent/repo']);
    expect(code).toBe(2);
    const line = JSON.parse(stderr.trim().split('\n').at(-1)!) as LogLine;
    expect(line.level).toBe('error');
    expect(line.msg).toMatch(/^cannot start: .*\/nonexistent\/repo/);
  });
});
