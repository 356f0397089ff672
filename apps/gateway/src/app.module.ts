import { type DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { HealthController, READINESS, type Readiness } from './health.controller';
import { HttpExceptionFilter } from './http-exception.filter';
import { P2PHTTP_SERVICE, P2pHttpController } from './p2phttp.controller';
import { type P2pHttpService } from './p2phttp.service';
import { StatsController } from './stats.controller';

@Module({})
export class GatewayModule {
  static forRoot(
    service: P2pHttpService,
    readiness: Readiness = () => Promise.resolve([]),
  ): DynamicModule {
    return {
      module: GatewayModule,
      controllers: [P2pHttpController, StatsController, HealthController],
      providers: [
        { provide: P2PHTTP_SERVICE, useValue: service },
        { provide: READINESS, useValue: readiness },
        { provide: APP_FILTER, useClass: HttpExceptionFilter },
      ],
    };
  }
}
