/**
 * What the stress waves share: their sizes and bounds, the shape of their results, and the
 * context a wave runs in. See stress.ts.
 */
import type { Repo, Sandbox, ServedRepo } from '../../test/support/repos';
import type { RunningServer, ServerSpec, ServerStats } from '../../test/support/servers';
import { KiB, MiB, type Random } from '../../test/support/util';

export interface StressProfile {
  name: 'full' | 'short';
  loopClients: number;
  loopSeconds: number;
  loopFiles: number;
  loopFileSize: number;
  getJobs: number;
  killRuns: number;
  killFileSize: number;
  /** each killed get is SIGKILLed after a uniform random delay within the time one whole get
   * took (measured first), capped at this */
  killMaxDelayMs: number;
  httpGets: number;
  httpDestroyMaxMs: number;
  /** bound of every git-annex command */
  commandBoundMs: number;
  /** bound of every HTTP request that is meant to complete */
  requestBoundMs: number;
  /** how long the server may take to settle after a wave */
  settleMs: number;
  serverJobs: number;
}

export const STRESS_FULL: StressProfile = {
  name: 'full',
  loopClients: 4,
  loopSeconds: 60,
  loopFiles: 20,
  loopFileSize: 256 * KiB,
  getJobs: 4,
  killRuns: 30,
  killFileSize: 200 * MiB,
  killMaxDelayMs: 5000,
  httpGets: 64,
  httpDestroyMaxMs: 3000,
  commandBoundMs: 60_000,
  requestBoundMs: 30_000,
  settleMs: 10_000,
  serverJobs: 2,
};

export const STRESS_SHORT: StressProfile = {
  name: 'short',
  loopClients: 3,
  loopSeconds: 15,
  loopFiles: 8,
  loopFileSize: 128 * KiB,
  getJobs: 4,
  killRuns: 5,
  killFileSize: 32 * MiB,
  killMaxDelayMs: 3000,
  httpGets: 16,
  httpDestroyMaxMs: 1500,
  commandBoundMs: 30_000,
  requestBoundMs: 15_000,
  settleMs: 10_000,
  serverJobs: 2,
};

export const LOOP_DIR = 'loop';
export const KILL_FILE = 'big/kill.bin';
export const LOCK_FILE = 'lock/locked.bin';
/** Locked with keeplocked open while the server is killed (restart-with-locks). */
export const RESTART_LOCK_FILE = 'lock/restart.bin';

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface WaveResult {
  id: string;
  title: string;
  ok: boolean;
  elapsedMs: number;
  counts: Record<string, number>;
  checks: Check[];
  /** /stats once the server settled (this project's server only) */
  stats?: ServerStats;
}

export interface StressResult {
  profile: StressProfile;
  server: string;
  seed: number;
  ok: boolean;
  elapsedMs: number;
  waves: WaveResult[];
  /** checks of the shutdown at the end */
  shutdown: Check[];
  /** set when the run could not be carried out at all */
  error?: string;
}

export interface Context {
  profile: StressProfile;
  sandbox: Sandbox;
  served: ServedRepo;
  server: RunningServer;
  spec: ServerSpec;
  clients: Repo[];
  restartStuck: boolean;
  rng: Random;
  log: (line: string) => void;
  /** this project's server (has /stats), not the reference */
  isProject: boolean;
}

export interface WaveBody {
  counts: Record<string, number>;
  checks: Check[];
}

export const check = (name: string, ok: boolean, detail = ''): Check => ({ name, ok, detail });
