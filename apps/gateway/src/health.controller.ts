/**
 * `/healthz` (the process answers) and `/readyz` (what it depends on is reachable: the
 * repositories it serves and can write, or Redis and a live worker in cluster mode), and
 * `/metrics` (Prometheus text), answered by the one health helper of every role
 * (@annex-p2phttp/metrics, health.ts). They need no credentials. `/metrics` (and `/stats`) are on
 * the API's port only without `--ops-listen`; with it they move to that listener (ops-server.ts).
 */
import { Controller, Get, Inject, Res } from '@nestjs/common';
import { type Health, type HealthAnswer } from '@annex-p2phttp/metrics';
import { type FastifyReply } from 'fastify';

export const HEALTH = Symbol('Health');

function send(reply: FastifyReply, answer: HealthAnswer): void {
  void reply.code(answer.status).header('content-type', answer.contentType).send(answer.body);
}

@Controller()
export class MetricsController {
  constructor(@Inject(HEALTH) private readonly health: Health) {}

  @Get('metrics')
  async metrics(@Res() reply: FastifyReply): Promise<void> {
    send(reply, await this.health.scrape());
  }
}

@Controller()
export class HealthController {
  constructor(@Inject(HEALTH) private readonly health: Health) {}

  @Get('healthz')
  healthz(@Res() reply: FastifyReply): void {
    send(reply, this.health.live());
  }

  @Get('readyz')
  async readyz(@Res() reply: FastifyReply): Promise<void> {
    send(reply, await this.health.ready());
  }
}
