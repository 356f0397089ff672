/**
 * `GET /healthz` (the process answers) and `GET /readyz` (it can serve: 503 with the reasons
 * otherwise, e.g. Redis unreachable or no live proxy worker in cluster mode), for probes.
 */
import { Controller, Get, Inject, Res } from '@nestjs/common';
import { type FastifyReply } from 'fastify';

export const READINESS = Symbol('readiness');

/** Reasons the gateway cannot serve now; empty when ready. */
export type Readiness = () => Promise<string[]>;

@Controller()
export class HealthController {
  constructor(@Inject(READINESS) private readonly readiness: Readiness) {}

  @Get('healthz')
  healthz(@Res() reply: FastifyReply): void {
    void reply.code(200).header('content-type', 'text/plain;charset=utf-8').send('ok\n');
  }

  @Get('readyz')
  async readyz(@Res() reply: FastifyReply): Promise<void> {
    const problems = await this.readiness();
    void reply
      .code(problems.length === 0 ? 200 : 503)
      .header('content-type', 'text/plain;charset=utf-8')
      .send(`${problems.length === 0 ? 'ready' : problems.join('\n')}\n`);
  }
}
