/**
 * Routes of the HTTP API (PROTOCOL.md §2.1). Thin: every request goes to P2pHttpService. Paths are
 * matched here; versions and operations are checked by the service so that an unknown version or
 * an operation absent from a version answers 404, which makes clients fall back.
 */
import { Controller, Get, Inject, Param, Post, Req, Res } from '@nestjs/common';
import { type FastifyReply, type FastifyRequest } from 'fastify';
import { P2pHttpService } from './p2phttp.service';

export const P2PHTTP_SERVICE = Symbol('P2pHttpService');

@Controller('git-annex/:uuid')
export class P2pHttpController {
  constructor(@Inject(P2PHTTP_SERVICE) private readonly service: P2pHttpService) {}

  @Get('key/:key')
  getUnversioned(
    @Req() request: FastifyRequest,
    @Res() reply: FastifyReply,
    @Param('uuid') uuid: string,
    @Param('key') key: string,
  ): Promise<void> {
    return this.service.get(request, reply, uuid, null, key);
  }

  @Get(':version/key/:key')
  getVersioned(
    @Req() request: FastifyRequest,
    @Res() reply: FastifyReply,
    @Param('uuid') uuid: string,
    @Param('version') version: string,
    @Param('key') key: string,
  ): Promise<void> {
    return this.service.get(request, reply, uuid, version, key);
  }

  @Post(':version/:op')
  post(
    @Req() request: FastifyRequest,
    @Res() reply: FastifyReply,
    @Param('uuid') uuid: string,
    @Param('version') version: string,
    @Param('op') op: string,
  ): Promise<void> {
    return this.service.post(request, reply, uuid, version, op);
  }
}
