/**
 * The benchmark report: one row per metric of each workload (median over the rounds of each
 * server), server peak RSS and CPU rows, the ratio of this project's server to the best
 * reference, footnotes for stalls and failures, and the JSON record of every run.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { Role } from '../../test/support/servers';
import { formatNumber, median, MiB } from '../../test/support/util';
import type { Profile, Workload } from './workloads';

export interface Column {
  id: string;
  label: string;
  role: Role;
}

export type RunStatus = 'ok' | 'stall' | 'fail' | 'skipped';

export interface RunRecord {
  workload: string;
  side: string;
  round: number;
  status: RunStatus;
  values: Record<string, number>;
  /** server process tree while the workload ran */
  peakRssBytes?: number;
  peakPssBytes?: number;
  cpuSeconds?: number;
  peakProcesses?: number;
  /** what it was doing when it stalled, or why it failed */
  detail?: string;
  elapsedMs: number;
}

export interface ReportInput {
  profile: Profile;
  columns: readonly Column[];
  workloads: readonly Workload[];
  records: readonly RunRecord[];
  environment: Record<string, string>;
}

interface Row {
  label: string;
  better: 'higher' | 'lower';
  format: (value: number) => string;
  value: (record: RunRecord) => number | undefined;
}

export function renderReport({
  profile,
  columns,
  workloads,
  records,
  environment,
}: ReportInput): string {
  const notes: string[] = [];
  const noteNumbers = new Map<string, number>();
  const lines: string[] = [];
  for (const [name, value] of Object.entries(environment)) {
    lines.push(`${name}: ${value}`);
  }
  lines.push(
    `profile: ${profile.name}, ${profile.rounds} round(s), servers in turn (A B A B), ` +
      `stall bound ${profile.stallMs / 1000} s; medians over the rounds`,
    `ratio = annex-p2phttp ÷ the best reference column (throughput: higher is better; ` +
      `p99, memory, CPU: lower is better)`,
    `server memory and CPU: the whole process tree (git-annex-shell children included), ` +
      `sampled from /proc every 200 ms; RSS sums count a shared page in every process ` +
      `mapping it, PSS sums divide it among them`,
    '',
  );
  const header = ['', ...columns.map((c) => c.label), 'ratio'];
  const table: string[][] = [];
  for (const workload of workloads) {
    table.push([`${workload.title(profile)}`]);
    const rows: Row[] = [
      ...workload.metrics.map((metric): Row => ({
        label: metric.label,
        better: metric.better,
        format: formatNumber,
        value: (record) => record.values[metric.key],
      })),
      {
        label: 'server peak RSS MiB',
        better: 'lower',
        format: (v) => formatNumber(v),
        value: (record) =>
          record.peakRssBytes === undefined ? undefined : record.peakRssBytes / MiB,
      },
      {
        label: 'server peak PSS MiB',
        better: 'lower',
        format: (v) => formatNumber(v),
        value: (record) =>
          record.peakPssBytes === undefined ? undefined : record.peakPssBytes / MiB,
      },
      {
        label: 'server CPU s',
        better: 'lower',
        format: (v) => v.toFixed(2),
        value: (record) => record.cpuSeconds,
      },
    ];
    rows.forEach((row, rowIndex) => {
      const cells: string[] = [`  ${row.label}`];
      const medians = new Map<string, number>();
      for (const column of columns) {
        if (!workload.roles.includes(column.role)) {
          cells.push('');
          continue;
        }
        const runs = records.filter((r) => r.workload === workload.id && r.side === column.id);
        const bad = runs.filter((r) => r.status === 'stall' || r.status === 'fail');
        const ok = runs.filter((r) => r.status === 'ok');
        const first = bad[0];
        if (first !== undefined && rowIndex < workload.metrics.length) {
          const noteKey = `${workload.id} ${column.id}`;
          let number = noteNumbers.get(noteKey);
          if (number === undefined) {
            number = notes.length + 1;
            noteNumbers.set(noteKey, number);
            notes.push(`[${number}] ${describeBad(workload, profile, column, runs, first)}`);
          }
          cells.push(`${first.status === 'stall' ? 'STALL' : 'FAIL'}[${number}]`);
          continue;
        }
        const values = ok
          .map(row.value)
          .filter((v): v is number => v !== undefined && Number.isFinite(v));
        const m = median(values);
        if (m === undefined) {
          cells.push(runs.length === 0 ? '' : '-');
          continue;
        }
        medians.set(column.id, m);
        cells.push(row.format(m));
      }
      cells.push(ratioCell(columns, medians, row.better));
      table.push(cells);
    });
  }
  lines.push(...formatTable(header, table));
  if (notes.length > 0) {
    lines.push('', ...notes);
  }
  return lines.join('\n');
}

function describeBad(
  workload: Workload,
  profile: Profile,
  column: Column,
  runs: readonly RunRecord[],
  first: RunRecord,
): string {
  const stalls = runs.filter((r) => r.status === 'stall').length;
  const fails = runs.filter((r) => r.status === 'fail').length;
  const skipped = runs.filter((r) => r.status === 'skipped').length;
  const counts = [
    stalls > 0 ? `${stalls} stalled` : '',
    fails > 0 ? `${fails} failed` : '',
    skipped > 0 ? `${skipped} not run after that` : '',
  ]
    .filter((s) => s !== '')
    .join(', ');
  const detail = (first.detail ?? '').split('\n').slice(0, 6).join('\n      ');
  const ok = runs.filter((r) => r.status === 'ok');
  const others =
    ok.length === 0
      ? ''
      : `; the ${ok.length} other round(s): ` +
        workload.metrics
          .map((metric) => {
            const m = median(ok.map((r) => r.values[metric.key] ?? Number.NaN));
            return `${m === undefined ? '-' : formatNumber(m)} ${metric.label}`;
          })
          .join(', ');
  return (
    `${column.label}, ${workload.title(profile)}: ${counts} of ${runs.length} round(s)` +
    `${others}; round ${first.round} ${first.status === 'stall' ? 'stalled' : 'failed'} after ` +
    `${(first.elapsedMs / 1000).toFixed(0)} s: ${detail}`
  );
}

function ratioCell(
  columns: readonly Column[],
  medians: ReadonlyMap<string, number>,
  better: 'higher' | 'lower',
): string {
  const ours = columns.find((c) => c.role === 'project' && medians.has(c.id));
  const references = columns
    .filter((c) => c.role === 'reference')
    .map((c) => medians.get(c.id))
    .filter((v): v is number => v !== undefined);
  if (ours === undefined || references.length === 0) {
    return '';
  }
  const best = better === 'higher' ? Math.max(...references) : Math.min(...references);
  const value = medians.get(ours.id) ?? 0;
  return best === 0 ? '' : `${(value / best).toFixed(2)}×`;
}

function formatTable(header: readonly string[], rows: readonly string[][]): string[] {
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.filter((r) => r.length > 1).map((r) => (r[i] ?? '').length)),
  );
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const out = [line(header)];
  for (const row of rows) {
    out.push(row.length === 1 ? (row[0] ?? '') : line(row));
  }
  return out;
}

/** Writes the JSON record of the whole run; returns its path. */
export async function writeJson(dir: string, name: string, data: unknown): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, name);
  await writeFile(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}
