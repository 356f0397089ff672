import { type DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { type Health } from '@annex-p2phttp/metrics';
import { HEALTH, HealthController, MetricsController } from './health.controller';
import { HttpExceptionFilter } from './http-exception.filter';
import { P2PHTTP_SERVICE, P2pHttpController } from './p2phttp.controller';
import { type P2pHttpService } from './p2phttp.service';
import { StatsController } from './stats.controller';

@Module({})
export class GatewayModule {
  /**
   * `opsRoutes`: whether /metrics and /stats are answered on the API's port (false when an ops
   * listener of their own serves them).
   */
  static forRoot(
    service: P2pHttpService,
    health: Health,
    { opsRoutes }: { opsRoutes: boolean } = { opsRoutes: true },
  ): DynamicModule {
    return {
      module: GatewayModule,
      controllers: [
        P2pHttpController,
        HealthController,
        ...(opsRoutes ? [MetricsController, StatsController] : []),
      ],
      providers: [
        { provide: P2PHTTP_SERVICE, useValue: service },
        { provide: HEALTH, useValue: health },
        { provide: APP_FILTER, useClass: HttpExceptionFilter },
      ],
    };
  }
}
