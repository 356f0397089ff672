/**
 * How long a content lock lasts after lockcontent, or after the last heartbeat of its keeplocked
 * request, when nothing else is configured: git-annex's own retention period of a lock (PROTOCOL.md
 * §2.5). The default of `--lock-ttl` and of both kinds of retention locks.
 */
export const CONTENT_LOCK_MS = 10 * 60_000;
