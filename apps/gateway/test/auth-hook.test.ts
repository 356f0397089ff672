/**
 * The auth hook client against a real HTTP server started here, whose answer each test picks:
 * allow, deny, 401, slow (answers only when released), down (nothing listens), failing (500).
 */
import {
  createServer,
  type IncomingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import { type AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuthHook, AuthHookUnavailable, type HookQuestion } from '../src/auth-hook';
import { freePort } from '../../../test/support/util';

type Mode = 'allow' | 'deny' | '401' | 'slow' | 'failing';

let server: Server;
let url: string;
let mode: Mode = 'allow';
const seen: IncomingHttpHeaders[] = [];
const held: ServerResponse[] = [];
let running = 0;
let mostRunning = 0;

beforeAll(async () => {
  server = createServer((request, response) => {
    seen.push(request.headers);
    running += 1;
    mostRunning = Math.max(mostRunning, running);
    // Counted out as soon as the answer is written (before the client can send the next call).
    let counted = true;
    const done = () => {
      if (counted) {
        counted = false;
        running -= 1;
      }
    };
    response.once('finish', done);
    response.once('close', done);
    switch (mode) {
      case 'allow':
        response.writeHead(204, { 'x-annex-user': 'forge-alice' }).end();
        return;
      case 'deny':
        response.writeHead(403).end('no');
        return;
      case '401':
        response.writeHead(401, { 'www-authenticate': 'Bearer' }).end();
        return;
      case 'failing':
        response.writeHead(500).end('boom');
        return;
      case 'slow':
        held.push(response);
        return;
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/check`;
});

afterEach(() => {
  for (const response of held.splice(0)) {
    response.destroy();
  }
  seen.length = 0;
  mostRunning = 0;
  mode = 'allow';
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const question = (overrides: Partial<HookQuestion> = {}): HookQuestion => ({
  authorization: 'Bearer forge-token',
  location: 'labs/alice/b',
  uuid: '7f0e5e2a-0000-4000-8000-000000000001',
  access: 'read',
  ...overrides,
});

async function unavailable(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(AuthHookUnavailable);
    return (error as Error).message;
  }
  throw new Error('the hook was not unavailable');
}

describe('AuthHook', () => {
  it('asks with the Authorization header unchanged and the repository and access', async () => {
    const hook = new AuthHook({ url, cacheMs: 0 });
    expect(await hook.decide(question({ location: 'labs/ä b', access: 'append' }))).toEqual({
      kind: 'allow',
      user: 'forge-alice',
    });
    expect(seen[0]?.authorization).toBe('Bearer forge-token');
    expect(decodeURI(String(seen[0]?.['x-annex-repository-path']))).toBe('labs/ä b');
    expect(seen[0]?.['x-annex-repository-uuid']).toBe('7f0e5e2a-0000-4000-8000-000000000001');
    expect(seen[0]?.['x-annex-access']).toBe('append');
    await hook.decide(question({ authorization: undefined }));
    expect(seen[1]?.authorization).toBeUndefined();
    hook.close();
  });

  it('maps 403 to deny, 401 to a login that could help', async () => {
    const hook = new AuthHook({ url, cacheMs: 0 });
    mode = 'deny';
    expect(await hook.decide(question())).toEqual({ kind: 'deny', status: 403 });
    mode = '401';
    expect(await hook.decide(question())).toEqual({ kind: 'deny', status: 401 });
    hook.close();
  });

  it('fails closed: a failing, slow or absent hook is unavailable, and that is not cached', async () => {
    const hook = new AuthHook({ url, cacheMs: 60_000, timeoutMs: 300 });
    mode = 'failing';
    expect(await unavailable(hook.decide(question()))).toMatch(/answered 500$/);
    mode = 'slow';
    expect(await unavailable(hook.decide(question()))).toMatch(/no answer within 300 ms$/);
    mode = 'allow';
    expect((await hook.decide(question())).kind).toBe('allow');
    hook.close();

    const down = new AuthHook({ url: `http://127.0.0.1:${await freePort()}/`, cacheMs: 0 });
    expect(await unavailable(down.decide(question()))).toMatch(/ECONNREFUSED/);
    down.close();
  });

  it('caches answers per (Authorization, repository, access) for cacheMs', async () => {
    const hook = new AuthHook({ url, cacheMs: 60_000 });
    for (let i = 0; i < 5; i += 1) {
      await hook.decide(question());
    }
    expect(hook.calls).toBe(1);
    mode = 'deny';
    await hook.decide(question({ access: 'remove' }));
    await hook.decide(question({ access: 'remove' }));
    await hook.decide(question({ authorization: 'Bearer other' }));
    await hook.decide(question({ location: 'public/a' }));
    expect(hook.calls).toBe(4);
    // The cached allow still stands although the hook would now deny.
    expect((await hook.decide(question())).kind).toBe('allow');
    hook.close();
  });

  it('asks again once an answer is older than cacheMs, and every time with 0', async () => {
    const short = new AuthHook({ url, cacheMs: 50 });
    await short.decide(question());
    await new Promise((resolve) => setTimeout(resolve, 200));
    await short.decide(question());
    expect(short.calls).toBe(2);
    short.close();
    const none = new AuthHook({ url, cacheMs: 0 });
    await none.decide(question());
    await none.decide(question());
    await none.decide(question());
    expect(none.calls).toBe(3);
    none.close();
  });

  it('makes one call for concurrent identical questions, and bounds the calls in flight', async () => {
    const hook = new AuthHook({ url, cacheMs: 0, maxInFlight: 2, timeoutMs: 30_000 });
    mode = 'slow';
    const same = [hook.decide(question()), hook.decide(question()), hook.decide(question())];
    const others = [1, 2, 3, 4].map((n) => hook.decide(question({ uuid: `u-${n}` })));
    await waitFor(() => held.length === 2);
    expect(running).toBe(2);
    // Release answers one by one: the next waiting call starts only when one ends.
    mode = 'allow';
    while (held.length > 0) {
      held.shift()?.writeHead(200).end();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const answers = await Promise.all([...same, ...others]);
    expect(answers.every((a) => a.kind === 'allow')).toBe(true);
    expect(hook.calls).toBe(5);
    expect(mostRunning).toBe(2);
    hook.close();
  });

  it('calls waiting for a place end within the timeout too, and no place is lost', async () => {
    const hook = new AuthHook({ url, cacheMs: 0, maxInFlight: 1, timeoutMs: 1000 });
    mode = 'slow';
    const outcomes = ['u-1', 'u-2', 'u-3'].map((uuid) =>
      unavailable(hook.decide(question({ uuid }))),
    );
    await waitFor(() => held.length === 1);
    for (const message of await Promise.all(outcomes)) {
      expect(message).toMatch(/: (no answer|no place for a call) within 1000 ms$/);
    }
    mode = 'allow';
    expect((await hook.decide(question({ uuid: 'u-4' }))).kind).toBe('allow');
    hook.close();
  });

  it('close() ends the calls in flight as unavailable', async () => {
    const hook = new AuthHook({ url, cacheMs: 0, timeoutMs: 30_000 });
    mode = 'slow';
    const pending = hook.decide(question());
    await waitFor(() => held.length === 1);
    hook.close();
    expect(await unavailable(pending)).toMatch(/shutting down$/);
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error('condition not met within 20 s');
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
