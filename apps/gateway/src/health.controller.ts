/**
 * `/metrics` (Prometheus text), `/healthz` (the process answers) and `/readyz` (what it depends on
 * is reachable: the repositories it serves, or Redis and a live worker in cluster mode). They need
 * no credentials; a deployment that must hide them keeps them off its public ingress.
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
export class HealthController {
  constructor(@Inject(OBSERVABILITY) private readonly observability: Observability) {}

  @Get('metrics')
  async metrics(@Res() reply: FastifyReply): Promise<void> {
    const { contentType, body } = await this.observability.metrics.render();
    void reply.code(200).header('content-type', contentType).send(body);
  }

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
