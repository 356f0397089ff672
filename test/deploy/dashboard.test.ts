/**
 * The Grafana dashboard (charts/annex-p2phttp/dashboards/annex-p2phttp.json, also provisioned by
 * docker-compose.yml): every PromQL expression names only metrics that libs/metrics registers
 * (`new Metrics(...)`, Node.js default metrics included), selects on the `app` and `instance`
 * template variables, and the panels the operators look for are there.
 */
import { Metrics } from '@annex-p2phttp/metrics';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHART_DIR } from './helm';

interface Panel {
  type: string;
  title: string;
  datasource?: unknown;
  targets?: { expr: string }[];
}
interface Dashboard {
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; definition?: string }[] };
}

/** PromQL functions, aggregations and keywords that may appear in the dashboard. */
const PROMQL_WORDS = new Set([
  'sum', 'max', 'min', 'avg', 'count', 'rate', 'irate', 'increase', 'histogram_quantile',
  'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset',
  'label_values', 'and', 'or', 'unless', 'topk', 'clamp_min',
]); // prettier-ignore

async function registeredNames(): Promise<Set<string>> {
  const names = new Set<string>();
  const metrics = new Metrics('gateway');
  for (const metric of await metrics.registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (String(metric.type) === 'histogram') {
      for (const suffix of ['_bucket', '_sum', '_count']) {
        names.add(metric.name + suffix);
      }
    }
  }
  return names;
}

/**
 * The metric names an expression selects: what is left once strings, label matchers, ranges,
 * `by (...)` lists, numbers, variables and PromQL words are taken out.
 */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\w+/g, ' ');
  const words = stripped.match(/[A-Za-z_:][A-Za-z0-9_:]*/g) ?? [];
  return words.filter((word) => !PROMQL_WORDS.has(word));
}

describe('Grafana dashboard', () => {
  it('selects only metrics that libs/metrics registers, filtered by app and instance', async () => {
    const file = path.join(CHART_DIR, 'dashboards/annex-p2phttp.json');
    const dashboard = JSON.parse(await readFile(file, 'utf8')) as Dashboard;
    const known = await registeredNames();
    expect(known.has('annex_p2phttp_http_requests_total')).toBe(true);
    expect(known.has('process_cpu_seconds_total')).toBe(true);

    const used = new Set<string>();
    const expressions: string[] = [];
    for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) {
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const { expr } of panel.targets ?? []) {
        expressions.push(expr);
        const names = metricNames(expr);
        expect(names.length, expr).toBeGreaterThan(0);
        for (const name of names) {
          expect(known.has(name), `${name} in ${expr}`).toBe(true);
          used.add(name);
        }
        // Every selector narrows to the chosen apps and instances.
        const selectors = expr.match(/[a-z_:]+\{[^}]*\}/g) ?? [];
        expect(selectors.length, expr).toBe(names.length);
        for (const selector of selectors) {
          expect(selector, expr).toContain('app=~"$app"');
          expect(selector, expr).toContain('instance=~"$instance"');
        }
      }
    }
    for (const variable of dashboard.templating.list) {
      for (const name of metricNames(
        (variable.definition ?? '').replace(/^label_values\((.*),\s*\w+\)$/, '$1'),
      )) {
        expect(known.has(name), `${name} in variable ${variable.name}`).toBe(true);
      }
    }
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(['datasource', 'app', 'instance']);

    // What the operators look for first.
    for (const wanted of [
      'annex_p2phttp_http_requests_total',
      'annex_p2phttp_http_request_duration_seconds_bucket',
      'annex_p2phttp_http_sent_bytes_total',
      'annex_p2phttp_http_received_bytes_total',
      'annex_p2phttp_pool_connections',
      'annex_p2phttp_pool_evictions_total',
      'annex_p2phttp_pool_opens_total',
      'annex_p2phttp_pool_waiters',
      'annex_p2phttp_locks',
      'annex_p2phttp_keeplocked_requests',
      'annex_p2phttp_queue_jobs',
      'annex_p2phttp_queue_job_duration_seconds_bucket',
    ]) {
      expect(used.has(wanted), wanted).toBe(true);
    }
    expect(expressions.some((e) => e.startsWith('histogram_quantile(0.99'))).toBe(true);
    expect(expressions.some((e) => e.includes('status=~"5.."'))).toBe(true);
    expect(expressions.some((e) => e.includes('status=~"4.."'))).toBe(true);
  });

  it('finds metric names in PromQL and rejects names libs/metrics does not have', async () => {
    expect(
      metricNames(
        'histogram_quantile(0.9, sum by (app, le) (rate(foo_bucket{app=~"$app"}[$__rate_interval])))',
      ),
    ).toEqual(['foo_bucket']);
    expect(metricNames('sum(a_total{status=~"5.."}) / sum(b_total)')).toEqual([
      'a_total',
      'b_total',
    ]);
    const known = await registeredNames();
    expect(known.has('annex_p2phttp_http_requests')).toBe(false);
    expect(known.has('annex_p2phttp_pool_size')).toBe(false);
  });
});
