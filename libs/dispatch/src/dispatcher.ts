/**
 * The Dispatcher seam (DESIGN.md): how the gateway gets repository operations done. The embedded
 * server runs them in process over its own pool; cluster mode sends them to proxy workers. Both
 * run the same operation functions of @annex-p2phttp/p2p.
 */
import { type SessionTarget } from '@annex-p2phttp/p2p';
import {
  type GetOutcome,
  type GetRequest,
  type PlusResult,
  type PutOffsetResult,
  type PutOutcome,
  type PutRequest,
} from '@annex-p2phttp/ops';

/** A repository-side retention lock, held until `release` or until it is lost. */
export interface HeldLock {
  /** Unlocks in the repository. Idempotent. */
  release(): Promise<void>;
  /**
   * Ends the holding session by a signal without unlocking: git-annex keeps the lock's retention
   * file, and the content stays locked for the ten minutes after it was locked (shutdown, when
   * the lock must outlive this process). Idempotent; a no-op after `release`.
   */
  abandon(): void;
  /** Called if the lock is lost without `release` (the holding session died). */
  onLost(listener: () => void): void;
}

export interface DispatcherStats {
  /** Sessions running an operation. */
  readonly active: number;
  /** Sessions kept idle for reuse. */
  readonly idle: number;
  /** Requests waiting for a job slot. */
  readonly waiting: number;
  /** Sessions holding a retention lock. */
  readonly locks: number;
  /** Sessions that exist (each one a git-annex-shell process). */
  readonly connections: number;
  /** GET bodies being streamed. */
  readonly streams: number;
  readonly opened: number;
  readonly openFailures: number;
  readonly evicted: number;
  readonly expired: number;
}

export interface Dispatcher {
  checkPresent(target: SessionTarget, key: string, signal?: AbortSignal): Promise<boolean>;
  /**
   * true when the content is plainly present without asking anyone (the repository's own object
   * file is there), else false, and then only `checkPresent` can tell. Optional: a dispatcher
   * that cannot look by itself leaves it out.
   */
  presentLocally?(target: SessionTarget, key: string): Promise<boolean>;
  /**
   * The size of the content when it is plainly present without asking anyone (the repository's
   * own object file), else undefined. Optional, like `presentLocally`.
   */
  localSize?(target: SessionTarget, key: string): Promise<number | undefined>;
  getTimestamp(target: SessionTarget, signal?: AbortSignal): Promise<number>;
  /** REMOVE, or REMOVE-BEFORE when `before` is given. */
  remove(
    target: SessionTarget,
    key: string,
    before: number | undefined,
    signal?: AbortSignal,
  ): Promise<PlusResult>;
  putOffset(target: SessionTarget, key: string, signal?: AbortSignal): Promise<PutOffsetResult>;
  put(target: SessionTarget, request: PutRequest, signal?: AbortSignal): Promise<PutOutcome>;
  /** The body of a `data` outcome must be consumed or destroyed; the dispatcher owns the rest. */
  get(target: SessionTarget, request: GetRequest, signal?: AbortSignal): Promise<GetOutcome>;
  /** Takes a retention lock on a dedicated session; null when the repository refused it. */
  lockContent(target: SessionTarget, key: string): Promise<HeldLock | null>;
  stats(): DispatcherStats;
  /** Stops: refuses new work, ends every session (in-flight ones after `graceMs`). */
  close(graceMs?: number): Promise<void>;
}
