/**
 * AccessControl: the repository's rules (flags or the policy file), the environment's users and
 * the auth hook (a real HTTP server started here) combined into one answer per request.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  loadUsers,
  parsePolicy,
  type AuthPolicy,
  type PermissionClass,
} from '@annex-p2phttp/config';
import { AnnexP2PError } from '@annex-p2phttp/protocol';
import { AccessControl } from '../src/access';
import { AuthHook } from '../src/auth-hook';
import { httpAnswer } from '../src/error-status';
import { HttpError } from '../src/http-error';

const FLAGS: AuthPolicy = {
  authEnv: false,
  authEnvHttp: true,
  unauthReadonly: false,
  unauthAppendonly: false,
  unauthNolocking: false,
  wideopen: false,
};
const users = loadUsers({
  GIT_ANNEX_P2PHTTP_PASSWORD_alice: 'alice-pw',
  GIT_ANNEX_P2PHTTP_PERMISSIONS_alice: 'appendonly',
});
const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

let server: Server;
let hookUrl: string;
const asked: IncomingHttpHeaders[] = [];

beforeAll(async () => {
  server = createServer((request, response) => {
    asked.push(request.headers);
    const authorization = request.headers.authorization;
    if (authorization === 'Bearer forge-token') {
      response.writeHead(200, { 'x-annex-user': 'dora' }).end();
    } else if (authorization === undefined) {
      response.writeHead(request.headers['x-annex-repository-path'] === 'open' ? 204 : 401).end();
    } else {
      response.writeHead(403).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  hookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

async function outcome(
  access: AccessControl,
  authorization: string | undefined,
  location: string,
  cls: PermissionClass,
): Promise<string> {
  try {
    const grant = await access.check({ authorization, tls: false, location, uuid: 'u-1', cls });
    return `ok:${grant.user ?? 'anonymous'}:${grant.mode}`;
  } catch (error) {
    if (error instanceof HttpError) {
      return String(error.status);
    }
    expect(error).toBeInstanceOf(AnnexP2PError);
    return String(httpAnswer(error as AnnexP2PError).status);
  }
}

describe('AccessControl', () => {
  it('without policy or hook: the flags, and 400 for a scheme other than Basic', async () => {
    const access = new AccessControl({ flags: FLAGS, users });
    expect(await outcome(access, undefined, 'x', 'read')).toBe('401');
    expect(await outcome(access, basic('alice', 'alice-pw'), 'x', 'append')).toBe(
      'ok:alice:appendonly',
    );
    expect(await outcome(access, basic('alice', 'alice-pw'), 'x', 'remove')).toBe('403');
    expect(await outcome(access, 'Bearer forge-token', 'x', 'read')).toBe('400');
  });

  it('a hook alone decides what the flags and users leave open', async () => {
    const hook = new AuthHook({ url: hookUrl, cacheMs: 0 });
    const access = new AccessControl({ flags: FLAGS, users, hook });
    const before = asked.length;
    // The users of the environment are decided without the hook.
    expect(await outcome(access, basic('alice', 'alice-pw'), 'x', 'remove')).toBe('403');
    expect(asked.length).toBe(before);
    // A forge's token, an unknown login, no login: the hook.
    expect(await outcome(access, 'Bearer forge-token', 'x', 'remove')).toBe('ok:dora:full');
    expect(await outcome(access, 'Bearer forge-token', 'x', 'read')).toBe('ok:dora:readonly');
    expect(await outcome(access, basic('mallory', 'x'), 'x', 'read')).toBe('403');
    expect(await outcome(access, undefined, 'x', 'read')).toBe('401');
    expect(await outcome(access, undefined, 'open', 'append')).toBe('ok:anonymous:appendonly');
    expect(asked.length).toBe(before + 5);
    hook.close();
  });

  it('with a policy: unmatched repositories are 404 before any hook is asked', async () => {
    const hook = new AuthHook({ url: hookUrl, cacheMs: 0 });
    const policy = parsePolicy(
      'repositories:\n  - path: "pub/**"\n    anonymous: readonly\n    users: { alice: full }\n',
      'p',
    );
    const access = new AccessControl({ flags: FLAGS, users, policy: () => policy, hook });
    const before = asked.length;
    expect(await outcome(access, 'Bearer forge-token', 'secret/x', 'read')).toBe('404');
    expect(await outcome(access, undefined, 'pub/a', 'read')).toBe('ok:anonymous:readonly');
    // The environment caps what the policy grants (alice: appendonly).
    expect(await outcome(access, basic('alice', 'alice-pw'), 'pub/a', 'remove')).toBe('403');
    expect(asked.length).toBe(before);
    expect(await outcome(access, 'Bearer forge-token', 'pub/a', 'remove')).toBe('ok:dora:full');
    expect(asked.at(-1)?.['x-annex-repository-path']).toBe('pub/a');
    hook.close();
  });

  it('an unreachable hook denies with 503', async () => {
    const hook = new AuthHook({ url: 'http://127.0.0.1:1/', cacheMs: 0 });
    const access = new AccessControl({ flags: FLAGS, users, hook });
    expect(await outcome(access, 'Bearer forge-token', 'x', 'read')).toBe('503');
    hook.close();
  });
});
