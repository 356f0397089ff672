/**
 * Who made a request, as authorization decided it: the access log names the user (or anonymous)
 * without looking at credentials itself.
 */
import { type FastifyRequest } from 'fastify';

const users = new WeakMap<FastifyRequest, string>();

/** Records the authenticated user of `request` (null: anonymous). */
export function noteUser(request: FastifyRequest, user: string | null): void {
  if (user !== null) {
    users.set(request, user);
  }
}

/** The authenticated user of `request`, or null. */
export function requestUser(request: FastifyRequest): string | null {
  return users.get(request) ?? null;
}
