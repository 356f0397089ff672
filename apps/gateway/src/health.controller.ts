/**
 * `/healthz` (the process answers) and `/readyz` (what it depends on is reachable: the
 * repositories it serves and can write, or Redis and a live worker in cluster mode), and
 * `/metrics` (Prometheus text). They need no credentials. `/metrics` (and `/stats`) are on the
 * API's port only without `--ops-listen`; with it they move to that listener (ops-server.ts).
 */
import { Controller, Get, Inject, Res } from '@nestjs/common';
import { type Metrics } from '@annex-p2phttp/metrics';
import { type FastifyReply } from 'fastify';

export const OBSERVABILITY = Symbol('Observability');

export interface ReadinessCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly detail?: string;
}

export interface Observability {
  readonly metrics: Metrics;
  readiness(): Promise<ReadinessCheck[]>;
}

@Controller()
export class MetricsController {
  constructor(@Inject(OBSERVABILITY) private readonly observability: Observability) {}

  @Get('metrics')
  async metrics(@Res() reply: FastifyReply): Promise<void> {
    const { contentType, body } = await this.observability.metrics.render();
    void reply.code(200).header('content-type', contentType).send(body);
  }
}

@Controller()
export class HealthController {
  constructor(@Inject(OBSERVABILITY) private readonly observability: Observability) {}

  @Get('healthz')
  healthz(@Res() reply: FastifyReply): void {
    void reply.code(200).header('content-type', 'application/json').send('{"status":"ok"}');
  }

  @Get('readyz')
  async readyz(@Res() reply: FastifyReply): Promise<void> {
    let checks: ReadinessCheck[];
    try {
      checks = await this.observability.readiness();
    } catch (error) {
      checks = [{ name: 'readiness', ok: false, detail: String(error) }];
    }
    const ok = checks.every((check) => check.ok);
    void reply
      .code(ok ? 200 : 503)
      .header('content-type', 'application/json')
      .send(JSON.stringify({ status: ok ? 'ready' : 'not ready', checks }));
  }
}
