/**
 * The lock-service's core: it holds the repository-side retention locks of cluster mode, one
 * LOCKCONTENT on a dedicated git-annex-shell session per lock, and keeps them in step with their
 * records in the RedisLockStore. Each tick (about every second) it:
 *  1. heartbeats its holder key (its liveness, with a TTL);
 *  2. compares the epoch key with the one it knew: a different one means Redis lost its data or
 *     another primary took over, and every lock held here is recorded again, with the expiry
 *     known here when the new primary has an older one (it missed extends), so none is forgotten
 *     or expired by mistake;
 *  3. releases held locks whose record was deleted (an unlock whose pub/sub message was missed) or
 *     taken over by another lock-service (this one was thought dead);
 *  4. deletes expired records (any holder's) and releases those held here;
 *  5. takes again the locks of records that name this instance but are not held here (a
 *     keeplocked gateway wrote a record again after this instance had let it go);
 *  6. adopts records whose holder is dead, by an atomic claim, and re-takes their locks.
 * Unlocks arrive over pub/sub and release at once. A lock whose session dies is re-taken.
 *
 * The repository-side locks outlive this process: each is a RepositoryLock (repository-lock.ts),
 * whose retention file git-annex keeps when its session ends by a signal (a crash, or SIGTERM,
 * which abandons them), until another lock-service has taken it over.
 */
import { boundedStep, NO_ANSWER_FROM_REDIS, REDIS_STEP_MS } from '@annex-p2phttp/ops';
import { type RepositoryTarget, type SessionParams } from '@annex-p2phttp/protocol';
import { keyOfRequest, type LockReply, type LockRequest } from './lock-requests';
import { RESERVED, type ClusterLockRecord, type RedisLockStore } from './redis-lock-store';
import { RepositoryLock, type ContentLocker } from './repository-lock';

export const DEFAULT_HOLDER_TTL_MS = 10_000;
export const DEFAULT_SWEEP_INTERVAL_MS = 1000;
/** Records adopted per tick at most. */
const ADOPT_BATCH = 64;

/** The repositories a holder serves (a RepositoryRegistry of @annex-p2phttp/config). */
export interface ServedRepositories {
  /** The repository serving `uuid` on this machine, if any. */
  lookup(uuid: string): Promise<{ readonly path: string } | undefined>;
  /** The uuids served now. */
  list(): ReadonlyArray<{ readonly uuid: string }>;
}

interface Held {
  readonly record: ClusterLockRecord & { session: SessionParams };
  readonly lock: RepositoryLock;
  expiresAt: number;
}

export interface ClusterLockHolderOptions {
  readonly store: RedisLockStore;
  /** Takes the repository-side locks (the operation executor of the lock-service). */
  readonly locker: ContentLocker;
  readonly registry: ServedRepositories;
  /** This instance's identity in the records' holder field. */
  readonly holder: string;
  readonly holderTtlMs?: number;
  readonly sweepIntervalMs?: number;
  /** Why Redis cannot be used now ("Redis unreachable"), or null; steps of close skip then. */
  readonly redisProblem?: () => string | null;
  /** Called for each record this instance deleted because it expired. */
  readonly onExpired?: () => void;
  readonly log?: (message: string) => void;
  readonly now?: () => number;
}

export class ClusterLockHolder {
  private readonly held = new Map<string, Held>();
  /** Records this instance owns whose repository-side lock it must (re-)take. */
  private readonly retakes = new Set<string>();
  /** Lock requests being handled: their record may name this instance before they are held. */
  private readonly handling = new Set<string>();
  private readonly holderTtlMs: number;
  private readonly sweepIntervalMs: number;
  private readonly now: () => number;
  private epoch: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private closing = false;
  private lastProblem = '';
  private healthy = false;

  constructor(private readonly options: ClusterLockHolderOptions) {
    this.holderTtlMs = options.holderTtlMs ?? DEFAULT_HOLDER_TTL_MS;
    this.sweepIntervalMs = options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    this.now = options.now ?? Date.now;
  }

  get holder(): string {
    return this.options.holder;
  }

  /** Locks held here now. */
  get size(): number {
    return this.held.size;
  }

  /** Whether the last tick reached Redis. */
  get isHealthy(): boolean {
    return this.healthy;
  }

  /** The lockids held here. */
  lockids(): string[] {
    return [...this.held.keys()];
  }

  /** Runs a first tick (heartbeat, epoch, adoption), then one every sweep interval. */
  async start(): Promise<void> {
    await this.tick();
    this.timer = setInterval(() => void this.tick(), this.sweepIntervalMs);
  }

  /** A gateway's lock request: take the lock, then claim the record the gateway reserved. */
  async handle(request: LockRequest): Promise<LockReply> {
    if (this.closing) {
      throw new Error('the lock-service is shutting down');
    }
    const session: SessionParams = {
      clientUuid: request.clientUuid,
      bypass: request.bypass,
      version: request.version,
      mode: request.mode,
    };
    const key = keyOfRequest(request);
    this.handling.add(request.lockid);
    try {
      return await this.lockFor(request, key, session);
    } finally {
      this.handling.delete(request.lockid);
    }
  }

  private async lockFor(
    request: LockRequest,
    key: string,
    session: SessionParams,
  ): Promise<LockReply> {
    const { store } = this.options;
    const lock = await this.take(request.serverUuid, key, session);
    if (!lock) {
      // The gateway deletes its reservation when it hears of the refusal.
      return { locked: false };
    }
    const lockedAt = this.now();
    const expiresAt = lockedAt + request.ttlMs;
    let claimed = false;
    try {
      claimed =
        !this.closing &&
        (await store.claimPending(request.lockid, this.holder, lockedAt, expiresAt, session));
    } finally {
      if (!claimed) {
        // The gateway gave up (its reservation is gone), or this service is stopping.
        await lock.release();
      }
    }
    if (!claimed) {
      return { locked: false };
    }
    this.keep(
      {
        lockid: request.lockid,
        repository: request.serverUuid,
        key,
        holder: this.holder,
        lockedAt,
        expiresAt,
        session,
      },
      lock,
    );
    return { locked: true };
  }

  /**
   * An unlock message: the record is gone, release at once, then say so to the unlocking gateway,
   * which answers its client only once the repository would remove the content.
   */
  async unlocked(lockid: string): Promise<void> {
    if (await this.release(lockid, null)) {
      await this.options.store.markReleased(lockid).catch(() => undefined);
    }
  }

  /**
   * Stops: abandons every repository-side lock (its session ends by a signal, and git-annex keeps
   * its retention file until another instance has taken it over), then marks this holder dead so
   * live instances adopt the records at once. The records stay: the locks live on with another
   * instance. A round of upkeep under way, and marking the holder dead, wait for Redis at most a
   * short while each.
   */
  async close(deadlineMs = 10_000): Promise<void> {
    this.closing = true;
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
    const log = (message: string) => this.log(message);
    const ticking = this.ticking;
    if (ticking) {
      await boundedStep('finish the round of upkeep under way', () => ticking, {
        withinMs: Math.min(deadlineMs, REDIS_STEP_MS),
        log,
      });
    }
    for (const held of this.held.values()) {
      held.lock.abandon();
    }
    this.held.clear();
    // Not done, the records are adopted once this holder's heartbeat key expires instead.
    await boundedStep(
      'mark this lock-service gone',
      () => this.options.store.dropHolder(this.holder),
      {
        withinMs: REDIS_STEP_MS,
        late: NO_ANSWER_FROM_REDIS,
        skip: this.options.redisProblem?.(),
        log,
      },
    );
  }

  /** One round of upkeep; never throws (a failure is logged once and retried next tick). */
  tick(): Promise<void> {
    this.ticking ??= this.upkeep()
      .then(
        () => {
          this.healthy = true;
          this.lastProblem = '';
        },
        (error: unknown) => {
          this.healthy = false;
          const text = error instanceof Error ? error.message : String(error);
          if (text !== this.lastProblem) {
            this.lastProblem = text;
            this.log(`upkeep failed (retrying): ${text}`);
          }
        },
      )
      .finally(() => {
        this.ticking = null;
      });
    return this.ticking;
  }

  private async upkeep(): Promise<void> {
    if (this.closing) {
      return;
    }
    const { store } = this.options;
    await store.heartbeatHolder(this.holder, this.holderTtlMs);
    await this.checkEpoch();
    await this.reconcile();
    await this.expire();
    if (this.closing) {
      return;
    }
    for (const lockid of await store.heldBy(this.holder)) {
      if (!this.held.has(lockid) && !this.handling.has(lockid) && !this.retakes.has(lockid)) {
        this.log(`lock ${lockid} is recorded as held here but is not; taking it again`);
        this.retakes.add(lockid);
      }
    }
    // Every sweep asks which repositories have orphaned records; the served ones among them (the
    // registry is consulted only then) are named when adopting: no list of every repository.
    const orphaned = await store.orphanedRepositories(this.holder);
    if (orphaned.length > 0) {
      const { registry } = this.options;
      const served = new Set(registry.list().map((repository) => repository.uuid));
      const mine = orphaned.filter((uuid) => served.has(uuid));
      if (mine.length > 0) {
        for (const lockid of await store.adoptOrphans(this.holder, ADOPT_BATCH, mine)) {
          this.retakes.add(lockid);
        }
      }
    }
    for (const lockid of [...this.retakes]) {
      await this.retake(lockid);
    }
  }

  /** Records again every lock held here when Redis lost its data (the epoch changed). */
  private async checkEpoch(): Promise<void> {
    const { store } = this.options;
    const epoch = await store.epoch();
    if (epoch === this.epoch) {
      return;
    }
    if (this.epoch !== null && this.held.size > 0) {
      this.log(
        `Redis lost its lock records or another primary took over; recording the ${this.held.size} held here again`,
      );
    }
    for (const held of this.held.values()) {
      await store.restore({ ...held.record, holder: this.holder, expiresAt: held.expiresAt });
    }
    this.epoch = epoch;
  }

  /** Releases locks whose record is gone or belongs to another holder now. */
  private async reconcile(): Promise<void> {
    const { store } = this.options;
    const lockids = this.lockids();
    const states = await store.holders(lockids);
    const gone = new Map<string, string>();
    lockids.forEach((lockid, i) => {
      const state = states[i];
      const held = this.held.get(lockid);
      if (!state || state.holder !== this.holder) {
        gone.set(
          lockid,
          state ? `its record is held by ${state.holder || 'nobody'} now` : 'its record is gone',
        );
      } else if (held) {
        held.expiresAt = state.expiresAt;
      }
    });
    for (const [lockid, held] of this.held) {
      if (!gone.has(lockid)) {
        await held.lock.cover(
          held.expiresAt,
          () => this.held.get(lockid) === held && !this.closing,
          (error) => this.log(`cannot renew lock ${lockid}: ${String(error)}`),
        );
      }
    }
    // Records that vanished because Redis lost its data are recorded again by the next tick,
    // not released: look at the epoch once more before trusting their absence.
    if (gone.size > 0 && (await store.epoch()) === this.epoch) {
      await Promise.all([...gone].map(([lockid, reason]) => this.release(lockid, reason)));
    }
  }

  /** Deletes expired records (whoever holds them) and tells their holders. */
  private async expire(): Promise<void> {
    for (const record of await this.options.store.sweepExpired(this.now())) {
      if (record.holder !== RESERVED) {
        this.options.onExpired?.();
      }
      await this.release(record.lockid, `its record expired at ${record.expiresAt}`);
    }
  }

  /** Takes the repository-side lock of a record this instance owns (adopted, or lost). */
  private async retake(lockid: string): Promise<void> {
    const { store } = this.options;
    const record = await store.get(lockid);
    if (
      !record ||
      record.holder !== this.holder ||
      this.held.has(lockid) ||
      this.handling.has(lockid)
    ) {
      this.retakes.delete(lockid);
      return;
    }
    const session: SessionParams = record.session ?? {
      clientUuid: '00000000-0000-0000-0000-000000000000',
      bypass: [],
      version: 4,
      mode: 'full',
    };
    let lock: RepositoryLock | null;
    try {
      lock = await this.take(record.repository, record.key, session);
    } catch (error) {
      this.log(`cannot re-take lock ${lockid} yet: ${String(error)}`);
      return; // tried again next tick
    }
    this.retakes.delete(lockid);
    if (!lock) {
      // The content is not there to lock any more: the lock cannot be honoured.
      this.log(`lock ${lockid} of ${record.key} could not be re-taken; releasing it`);
      if (await store.deleteIf(lockid, { holder: this.holder })) {
        await store.publishUnlock(lockid);
      }
      return;
    }
    const [state] = await store.holders([lockid]).catch(() => [null]);
    if (
      this.closing ||
      !state ||
      state.holder !== this.holder ||
      this.held.has(lockid) ||
      this.handling.has(lockid)
    ) {
      // Gone, taken over, or held here meanwhile (a lock request): this one is not needed.
      await lock.release();
      return;
    }
    this.keep({ ...record, session, expiresAt: state.expiresAt }, lock);
  }

  /** LOCKCONTENT on a dedicated session; null when the repository refuses (content absent). */
  private async take(
    serverUuid: string,
    key: string,
    session: SessionParams,
  ): Promise<RepositoryLock | null> {
    const repository = await this.options.registry.lookup(serverUuid);
    if (!repository) {
      throw new Error(`repository ${serverUuid} is not served by this lock-service`);
    }
    const target: RepositoryTarget = {
      repoPath: repository.path,
      serverUuid,
      clientUuid: session.clientUuid,
      bypass: session.bypass,
      version: session.version,
      mode: session.mode,
    };
    return RepositoryLock.take(this.options.locker, target, key, this.now);
  }

  private keep(record: ClusterLockRecord & { session: SessionParams }, lock: RepositoryLock): void {
    const held: Held = { record, lock, expiresAt: record.expiresAt };
    this.held.set(record.lockid, held);
    // A lock whose session dies is taken again.
    lock.onLost(() => {
      if (this.held.get(record.lockid) === held) {
        this.held.delete(record.lockid);
        if (!this.closing) {
          this.log(`the session holding lock ${record.lockid} died; taking the lock again`);
          this.retakes.add(record.lockid);
        }
      }
    });
  }

  /**
   * Releases a lock held here; false when this holder did not hold it. `reason` is logged, unless
   * this is an unlock (null), the usual end of a lock.
   */
  private async release(lockid: string, reason: string | null): Promise<boolean> {
    const held = this.held.get(lockid);
    if (!held) {
      return false;
    }
    if (reason !== null) {
      this.log(`releasing lock ${lockid} of ${held.record.key}: ${reason}`);
    }
    this.held.delete(lockid);
    await held.lock.release();
    return true;
  }

  private log(message: string): void {
    (this.options.log ?? ((m: string) => process.stderr.write(`lock-service: ${m}\n`)))(message);
  }
}
