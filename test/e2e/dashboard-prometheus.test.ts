/**
 * The Grafana dashboard and the Prometheus configuration, checked against a real Prometheus
 * (Debian's `prometheus`, which scripts/install-deps.sh installs): `promtool check config` accepts
 * the shipped deploy/prometheus/prometheus.yml; a copy of it with its targets rewritten to the
 * apps started here (the embedded server, and a cluster: gateway, proxy worker, lock-service)
 * scrapes them while the git-annex client gets, copies and drops files through both; then every
 * PromQL expression of every panel, and the template variables' queries, are evaluated through
 * Prometheus' HTTP API: each must parse and return at least one series. Without Prometheus the
 * check is skipped with a message, except under CI, where it must be there.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import {
  addAndCommit,
  annex,
  annexUrlFor,
  delay,
  freePort,
  isReference,
  killAllTracked,
  makeClientClone,
  makeServedRepo,
  pollUntil,
  PROJECT_ROOT,
  reportServerOutputOnFailure,
  RunningServer,
  Sandbox,
  startServer,
  type ServedRepo,
} from './harness';
import { httpRequest, P2PApi } from './api';

const DASHBOARD = path.join(PROJECT_ROOT, 'charts/annex-p2phttp/dashboards/annex-p2phttp.json');
const PROMETHEUS_YML = path.join(PROJECT_ROOT, 'deploy/prometheus/prometheus.yml');
const present = (tool: string) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0;
const available = present('prometheus') && present('promtool');

/**
 * Grafana's variables as the dashboard shows everything: all apps, all instances, each variable's
 * "All" value (`.+`: series of other jobs, which have no `app` label, stay out).
 */
function substitute(expr: string, all: Record<string, string>): string {
  return expr
    .replace(/\$__rate_interval/g, '30s')
    .replace(/\$app\b/g, all.app ?? '.+')
    .replace(/\$instance\b/g, all.instance ?? '.+');
}

interface LogLine {
  msg: string;
  app?: string;
}

/** The first `http://127.0.0.1:PORT` port in a log line of `app` matching `pattern`. */
function portFromLog(output: string, app: string, pattern: RegExp): number | undefined {
  for (const text of output.split('\n')) {
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      continue;
    }
    if (line.app === app && pattern.test(line.msg)) {
      const match = /127\.0\.0\.1:(\d+)/.exec(line.msg);
      return match ? Number(match[1]) : undefined;
    }
  }
  return undefined;
}

function getJson<T>(port: number, urlPath: string): Promise<{ status: number; body: T }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (response) => {
        let text = '';
        response.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
        response.on('end', () => {
          try {
            resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) as T });
          } catch (error) {
            reject(error instanceof Error ? error : new Error(String(error)));
          }
        });
      })
      .on('error', reject);
  });
}

interface QueryAnswer {
  status: string;
  error?: string;
  data?: { resultType: string; result: unknown[] };
}

function promtool(args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile('promtool', args, { timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code ?? 1) : 0, output: `${stdout}${stderr}` });
    });
  });
}

describe.skipIf(isReference())('dashboard and Prometheus configuration, for real', () => {
  let sandbox: Sandbox;
  let repoEmbedded: ServedRepo;
  let repoCluster: ServedRepo;
  let embedded: RunningServer | undefined;
  let cluster: RunningServer | undefined;
  let prometheus: ChildProcess | undefined;
  let prometheusOutput = '';
  let prometheusPort = 0;

  reportServerOutputOnFailure(() => [embedded, cluster]);

  beforeAll(() => {
    if (!available) {
      console.warn(
        '\n##### dashboard-prometheus.test.ts SKIPPED: prometheus/promtool not installed ' +
          '(sudo scripts/install-deps.sh) #####\n',
      );
    }
  });

  afterAll(async () => {
    try {
      if (prometheus && prometheus.exitCode === null) {
        const exited = new Promise((resolve) => prometheus!.once('exit', resolve));
        process.kill(-prometheus.pid!, 'SIGTERM');
        await Promise.race([exited, delay(10_000)]);
        if (prometheus.exitCode === null && prometheus.signalCode === null) {
          process.kill(-prometheus.pid!, 'SIGKILL');
        }
      }
      await embedded?.stop();
      await cluster?.stop();
    } finally {
      killAllTracked();
      await sandbox?.remove();
    }
  });

  it('is installed under CI', () => {
    if (process.env.CI) {
      expect(available, 'scripts/install-deps.sh installs prometheus').toBe(true);
    }
  });

  it.skipIf(!available)('promtool check config accepts the shipped prometheus.yml', async () => {
    const result = await promtool(['check', 'config', PROMETHEUS_YML]);
    expect(result.code, result.output).toBe(0);
  });

  it.skipIf(!available)(
    'every panel expression parses and returns data after real traffic in both modes',
    { timeout: 600_000 },
    async () => {
      sandbox = await Sandbox.create('dashboard-prometheus');
      const files = [
        { path: 'a.bin', size: 60_000 },
        { path: 'b.bin', size: 4_000 },
      ];
      repoEmbedded = await makeServedRepo(sandbox, sandbox.path('embedded'), files);
      repoCluster = await makeServedRepo(sandbox, sandbox.path('cluster'), files);
      const extraArgs = ['--ops-listen', '127.0.0.1:0'];
      embedded = await startServer({
        sandbox,
        repo: repoEmbedded,
        kind: 'project',
        auth: ['--wideopen'],
        extraArgs,
      });
      cluster = await startServer({
        sandbox,
        repo: repoCluster,
        kind: 'cluster',
        auth: ['--wideopen'],
        extraArgs,
      });
      const ports = await pollUntil('every app has announced its ports', () => {
        const found = {
          embedded: portFromLog(embedded!.output(), 'embedded', /^\/metrics and \/stats on /),
          gateway: portFromLog(cluster!.output(), 'gateway', /^\/metrics and \/stats on /),
          worker: portFromLog(cluster!.output(), 'proxy-worker', /: data port /),
          locks: portFromLog(cluster!.output(), 'lock-service', /: listening on /),
        };
        return Object.values(found).every((p) => p !== undefined)
          ? (found as Record<keyof typeof found, number>)
          : undefined;
      });

      // The shipped configuration, pointed at the apps started here, scraping every second.
      const config = parseYaml(await readFile(PROMETHEUS_YML, 'utf8')) as {
        global: Record<string, string>;
        scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
      };
      prometheusPort = await freePort();
      const targets: Record<string, string[]> = {
        'annex-p2phttp-gateway': [ports.embedded, ports.gateway].map((p) => `127.0.0.1:${p}`),
        'annex-p2phttp-proxy-worker': [`127.0.0.1:${ports.worker}`],
        'annex-p2phttp-lock-service': [`127.0.0.1:${ports.locks}`],
        prometheus: [`127.0.0.1:${prometheusPort}`],
      };
      expect(config.scrape_configs.map((c) => c.job_name).sort()).toEqual(
        Object.keys(targets).sort(),
      );
      config.global.scrape_interval = '1s';
      config.global.evaluation_interval = '1s';
      for (const job of config.scrape_configs) {
        job.static_configs = [{ targets: targets[job.job_name]! }];
      }
      const configFile = sandbox.path('prometheus.yml');
      await writeFile(configFile, stringifyYaml(config));
      const checked = await promtool(['check', 'config', configFile]);
      expect(checked.code, checked.output).toBe(0);

      prometheus = spawn(
        'prometheus',
        [
          `--config.file=${configFile}`,
          `--storage.tsdb.path=${sandbox.path('tsdb')}`,
          `--web.listen-address=127.0.0.1:${prometheusPort}`,
          '--web.console.templates=/nonexistent',
          '--web.console.libraries=/nonexistent',
        ],
        { detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const collect = (chunk: Buffer) => {
        prometheusOutput = (prometheusOutput + chunk.toString('utf8')).slice(-100_000);
      };
      prometheus.stdout!.on('data', collect);
      prometheus.stderr!.on('data', collect);
      await pollUntil(
        'Prometheus is ready',
        async () => {
          const ready = await httpRequest(prometheusPort, '/-/ready', { method: 'GET' }).catch(
            () => undefined,
          );
          return ready?.status === 200 ? true : undefined;
        },
        { timeoutMs: 60_000 },
      );

      // Real traffic through both modes: the git-annex client, a missing key (404), a lock.
      for (const [name, server, repo] of [
        ['embedded', embedded, repoEmbedded],
        ['cluster', cluster, repoCluster],
      ] as const) {
        const client = await makeClientClone(
          sandbox,
          repo,
          sandbox.path(`client-${name}`),
          annexUrlFor(server.port),
        );
        await annex(client, ['get', 'a.bin', 'b.bin']);
        await addAndCommit(client, [{ path: 'up.bin', size: 20_000 }]);
        await annex(client, ['copy', '--to', 'origin', 'up.bin']);
        await annex(client, ['drop', '--from', 'origin', 'up.bin']);
        const api = new P2PApi(server.port, repo.uuid);
        expect((await api.get('SHA256E-s1--00.bin')).status).toBe(404);
        await api.post('checkpresent', { key: 'SHA256E-s1--00.bin' });
      }

      // Every target up.
      const up = await pollUntil(
        'every target is scraped',
        async () => {
          const answer = await getJson<QueryAnswer>(
            prometheusPort,
            `/api/v1/query?query=${encodeURIComponent('up')}`,
          );
          const result = (answer.body.data?.result ?? []) as { value: [number, string] }[];
          return result.length === 5 && result.every((r) => r.value[1] === '1')
            ? result
            : undefined;
        },
        { timeoutMs: 60_000 },
      );
      expect(up).toHaveLength(5);

      const dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as {
        panels: { type: string; title: string; targets?: { expr: string }[] }[];
        templating: { list: { name: string; definition?: string; allValue?: string }[] };
      };
      const all = Object.fromEntries(
        dashboard.templating.list.map((variable) => [variable.name, variable.allValue ?? '']),
      );
      expect(all.app).toBe('.+');
      expect(all.instance).toBe('.+');
      const expressions = dashboard.panels
        .filter((panel) => panel.type !== 'row')
        .flatMap((panel) =>
          (panel.targets ?? []).map((target) => ({ title: panel.title, expr: target.expr })),
        );
      expect(expressions.length).toBeGreaterThan(20);

      // Rates need two scrapes after the traffic; give them a few seconds.
      const counts = await pollUntil(
        'every expression returns data',
        async () => {
          const found: {
            title: string;
            expr: string;
            series: number;
            apps: (string | undefined)[];
            error?: string;
          }[] = [];
          for (const { title, expr } of expressions) {
            const answer = await getJson<QueryAnswer>(
              prometheusPort,
              `/api/v1/query?query=${encodeURIComponent(substitute(expr, all))}`,
            );
            const result = (answer.body.data?.result ?? []) as { metric: { app?: string } }[];
            found.push({
              title,
              expr,
              series: result.length,
              apps: result.map((series) => series.metric.app),
              error: answer.body.error,
            });
          }
          const errors = found.filter((f) => f.error !== undefined);
          if (errors.length > 0) {
            // A parse error does not go away by waiting.
            throw new Error(`PromQL errors: ${JSON.stringify(errors, null, 2)}`);
          }
          return found.every((f) => f.series > 0) ? found : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 2000 },
      ).catch(async (error: unknown) => {
        const found: string[] = [];
        for (const { expr } of expressions) {
          const answer = await getJson<QueryAnswer>(
            prometheusPort,
            `/api/v1/query?query=${encodeURIComponent(substitute(expr, all))}`,
          );
          found.push(`${answer.body.data?.result.length ?? answer.body.error}: ${expr}`);
        }
        throw new Error(`${String(error)}\n${found.join('\n')}`);
      });
      console.log(
        `dashboard expressions and their series after traffic:\n${counts
          .map((c) => `  ${String(c.series).padStart(3)}  ${c.title}: ${c.expr}`)
          .join('\n')}`,
      );

      // A panel by app shows this project's apps only, not every process Prometheus scrapes.
      const apps = ['embedded', 'gateway', 'lock-service', 'proxy-worker'];
      for (const { expr, apps: seen } of counts.filter((c) => /by \(app/.test(c.expr))) {
        for (const app of seen) {
          expect(apps, expr).toContain(app);
        }
      }

      // The template variables' queries (label_values(SELECTOR, LABEL)) find values too.
      for (const variable of dashboard.templating.list) {
        const match = /^label_values\((.*),\s*(\w+)\)$/.exec(variable.definition ?? '');
        if (!match) {
          continue;
        }
        const [, selector, label] = match;
        const answer = await getJson<{ data: string[] }>(
          prometheusPort,
          `/api/v1/label/${label}/values?match[]=${encodeURIComponent(substitute(selector!, all))}`,
        );
        expect(answer.body.data.length, variable.name).toBeGreaterThan(0);
        if (label === 'app') {
          expect([...answer.body.data].sort()).toEqual(
            ['embedded', 'gateway', 'lock-service', 'proxy-worker'].sort(),
          );
        }
      }
    },
  );
});
