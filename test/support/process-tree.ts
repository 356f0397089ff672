/**
 * Resource use of a whole process tree, read from /proc: resident memory summed over the tree
 * (sampled, peak kept) and CPU seconds. CPU counts each process's own user+system time plus the
 * time of the children it has reaped (cutime+cstime), so git-annex-shell sessions that end during
 * a workload are still counted, through their parent (the server).
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import * as path from 'node:path';

function sysconf(name: string, fallback: number): number {
  try {
    const value = Number(execFileSync('getconf', [name], { encoding: 'utf8' }).trim());
    return Number.isFinite(value) && value > 0 ? value : fallback;
  } catch {
    return fallback;
  }
}

const CLOCK_TICKS = sysconf('CLK_TCK', 100);
const PAGE_SIZE = sysconf('PAGESIZE', 4096);

export interface ProcEntry {
  pid: number;
  ppid: number;
  rssBytes: number;
  /** utime + stime + cutime + cstime, in seconds */
  cpuSeconds: number;
}

/** /proc/<pid>/stat of one process, or undefined if it is gone. */
export function readProc(pid: number): ProcEntry | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // comm (field 2) may hold spaces and parentheses: the fields that follow start after the last ')'
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); field n is fields[n - 3]
  const field = (n: number): number => Number(fields[n - 3] ?? 0);
  const ticks = field(14) + field(15) + field(16) + field(17);
  return {
    pid,
    ppid: field(4),
    rssBytes: field(24) * PAGE_SIZE,
    cpuSeconds: ticks / CLOCK_TICKS,
  };
}

function allPids(): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number);
}

/** `root` and every live descendant of it. */
export function processTree(root: number): ProcEntry[] {
  const entries = allPids()
    .map(readProc)
    .filter((entry): entry is ProcEntry => entry !== undefined);
  const children = new Map<number, ProcEntry[]>();
  for (const entry of entries) {
    const list = children.get(entry.ppid) ?? [];
    list.push(entry);
    children.set(entry.ppid, list);
  }
  const rootEntry = entries.find((entry) => entry.pid === root);
  if (rootEntry === undefined) {
    return [];
  }
  const tree: ProcEntry[] = [];
  const queue = [rootEntry];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    tree.push(next);
    queue.push(...(children.get(next.pid) ?? []));
  }
  return tree;
}

/**
 * Proportional set size of a process (shared pages divided among the processes sharing them), so
 * that the git-annex binary mapped by many git-annex-shell sessions is counted once in a sum.
 */
export function readPss(pid: number): number {
  try {
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1');
    const match = /^Pss:\s+(\d+) kB/m.exec(rollup);
    return match === null ? 0 : Number(match[1]) * 1024;
  } catch {
    return 0;
  }
}

export interface TreeUsage {
  /** the sum of RSS over the tree (shared pages counted in every process) */
  peakRssBytes: number;
  /** the sum of PSS over the tree (shared pages counted once) */
  peakPssBytes: number;
  cpuSeconds: number;
  /** most processes seen in the tree at once */
  peakProcesses: number;
}

/** Samples a process tree every `intervalMs` between `start()` and `stop()`. */
export class TreeSampler {
  private timer: NodeJS.Timeout | undefined;
  private startCpu = 0;
  private lastCpu = 0;
  private peakRss = 0;
  private peakPss = 0;
  private peakProcesses = 0;

  constructor(
    readonly rootPid: number,
    private readonly intervalMs = 200,
  ) {}

  start(): this {
    const tree = processTree(this.rootPid);
    this.startCpu = sumCpu(tree);
    this.lastCpu = this.startCpu;
    this.record(tree);
    this.timer = setInterval(() => this.record(processTree(this.rootPid)), this.intervalMs);
    return this;
  }

  private record(tree: ProcEntry[]): void {
    if (tree.length === 0) {
      return; // the root is gone; keep what was measured
    }
    this.lastCpu = Math.max(this.lastCpu, sumCpu(tree));
    this.peakRss = Math.max(
      this.peakRss,
      tree.reduce((sum, entry) => sum + entry.rssBytes, 0),
    );
    this.peakPss = Math.max(
      this.peakPss,
      tree.reduce((sum, entry) => sum + readPss(entry.pid), 0),
    );
    this.peakProcesses = Math.max(this.peakProcesses, tree.length);
  }

  stop(): TreeUsage {
    if (this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.record(processTree(this.rootPid));
    }
    return {
      peakRssBytes: this.peakRss,
      peakPssBytes: this.peakPss,
      cpuSeconds: this.lastCpu - this.startCpu,
      peakProcesses: this.peakProcesses,
    };
  }
}

function sumCpu(tree: readonly ProcEntry[]): number {
  return tree.reduce((sum, entry) => sum + entry.cpuSeconds, 0);
}

export interface AnnexShell {
  pid: number;
  ppid: number;
  argv: string[];
}

/** Live `git-annex-shell` processes whose command line mentions one of `dirs`. */
export function annexShellsMentioning(dirs: readonly string[]): AnnexShell[] {
  const found: AnnexShell[] = [];
  for (const pid of allPids()) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
        .split('\0')
        .filter((arg) => arg !== '');
    } catch {
      continue;
    }
    const isShell = argv.some((arg) => path.basename(arg) === 'git-annex-shell');
    if (isShell && argv.some((arg) => dirs.some((dir) => arg.includes(dir)))) {
      found.push({ pid, ppid: readProc(pid)?.ppid ?? 0, argv });
    }
  }
  return found;
}

/** Every live process (other than this one) whose command line or cwd is inside `dir`. */
export function processesInside(dir: string): number[] {
  const found: number[] = [];
  for (const pid of allPids()) {
    if (pid === process.pid) {
      continue;
    }
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      let cwd = '';
      try {
        cwd = readlinkSync(`/proc/${pid}/cwd`);
      } catch {
        // not ours to read
      }
      if (cmdline.includes(dir) || cwd === dir || cwd.startsWith(`${dir}/`)) {
        found.push(pid);
      }
    } catch {
      // gone
    }
  }
  return found;
}
