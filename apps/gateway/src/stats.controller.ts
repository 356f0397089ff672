/**
 * `GET /stats`: the live bookkeeping of this process as JSON (pool, locks, open keeplocked
 * requests), for operators and for tests that check nothing is left behind. Counts only: no keys,
 * lock ids or client uuids.
 */
import { Controller, Get, Header, Inject } from '@nestjs/common';
import { P2PHTTP_SERVICE } from './p2phttp.controller';
import { P2pHttpService, type ServiceStats } from './p2phttp.service';

@Controller()
export class StatsController {
  constructor(@Inject(P2PHTTP_SERVICE) private readonly service: P2pHttpService) {}

  @Get('stats')
  @Header('content-type', 'application/json;charset=utf-8')
  stats(): Promise<ServiceStats> {
    return this.service.stats();
  }
}
