/**
 * The Dispatcher seam (DESIGN.md): how the gateway gets repository operations done. The embedded
 * server runs them in process over its own pool (the local dispatcher, over the operation
 * executor of @annex-p2phttp/ops); cluster mode sends them to proxy workers, which run the same
 * executor.
 */
import { type RepositoryTarget } from '@annex-p2phttp/protocol';
import {
  type ExecutorStats,
  type GetOutcome,
  type GetRequest,
  type PlusResult,
  type PutOffsetResult,
  type PutOutcome,
  type PutRequest,
} from '@annex-p2phttp/ops';

/** The executor's counts; the cluster dispatcher fills those it has (its jobs and streams). */
export type DispatcherStats = ExecutorStats;

export interface Dispatcher {
  checkPresent(target: RepositoryTarget, key: string, signal?: AbortSignal): Promise<boolean>;
  /**
   * true when the content is plainly present without asking anyone (the repository's own object
   * file is there), else false, and then only `checkPresent` can tell. Optional: a dispatcher
   * that cannot look by itself leaves it out.
   */
  presentLocally?(target: RepositoryTarget, key: string): Promise<boolean>;
  /**
   * The size of the content when it is plainly present without asking anyone (the repository's
   * own object file), else undefined. Optional, like `presentLocally`.
   */
  localSize?(target: RepositoryTarget, key: string): Promise<number | undefined>;
  getTimestamp(target: RepositoryTarget, signal?: AbortSignal): Promise<number>;
  /** REMOVE, or REMOVE-BEFORE when `before` is given. */
  remove(
    target: RepositoryTarget,
    key: string,
    before: number | undefined,
    signal?: AbortSignal,
  ): Promise<PlusResult>;
  putOffset(target: RepositoryTarget, key: string, signal?: AbortSignal): Promise<PutOffsetResult>;
  put(target: RepositoryTarget, request: PutRequest, signal?: AbortSignal): Promise<PutOutcome>;
  /** The body of a `data` outcome must be consumed or destroyed; the dispatcher owns the rest. */
  get(target: RepositoryTarget, request: GetRequest, signal?: AbortSignal): Promise<GetOutcome>;
  stats(): DispatcherStats;
  /** Stops: refuses new work, ends every session (in-flight ones after `graceMs`). */
  close(graceMs?: number): Promise<void>;
}
