/**
 * Repositories addressed by path: `/<location>/git-annex/<uuid>/…` reaches only the repository
 * at that location (its path below its --directory root; a --repo's absolute path) and the uuids
 * it proxies. The URL is rewritten before routing (raw-url.ts, routeUrl) to the plain
 * `/git-annex/<uuid>/…` form; the location it named is kept here, by request, for the lookup.
 */
import { type IncomingMessage } from 'node:http';

const scopes = new WeakMap<IncomingMessage, string>();

/** Records that `request` named the repository at `location`. */
export function setRepositoryScope(request: IncomingMessage, location: string): void {
  scopes.set(request, location);
}

/** The location `request` named in its path, or undefined for the plain form. */
export function repositoryScope(request: IncomingMessage): string | undefined {
  return scopes.get(request);
}
