/**
 * The one exception filter: HttpError keeps its status and message, Nest's own HTTP exceptions
 * (e.g. an unknown route) keep their status, P2P failures become 500 (502 when a session could not
 * be set up, 503 while shutting down), cluster failures become 503 with Retry-After (Redis down,
 * no live or free proxy worker, no lock-service), 504 (no answer in time) or 502 (a broken
 * stream), a client that went away gets nothing. Error bodies are plain text, as the reference
 * sends them; nothing is written once headers are out.
 */
import {
  type ArgumentsHost,
  Catch,
  type ExceptionFilter,
  HttpException,
  Logger,
} from '@nestjs/common';
import { DispatchError } from '@annex-p2phttp/dispatch';
import { LocksUnavailableError } from '@annex-p2phttp/locks';
import { P2PError } from '@annex-p2phttp/p2p';
import { ProtocolError } from '@annex-p2phttp/protocol';
import { type FastifyReply } from 'fastify';
import { HttpError } from './http-error';

@Catch()
export class HttpExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('http');

  catch(exception: unknown, host: ArgumentsHost): void {
    const reply = host.switchToHttp().getResponse<FastifyReply>();
    const { status, message, headers } = this.describe(exception);
    if (reply.sent || reply.raw.headersSent || reply.raw.destroyed) {
      if (status >= 500) {
        this.logger.warn(`after the response started: ${message}`);
      }
      reply.raw.destroy();
      return;
    }
    void reply
      .code(status)
      .headers(headers)
      .header('content-type', 'text/plain;charset=utf-8')
      .send(message);
  }

  private describe(exception: unknown): {
    status: number;
    message: string;
    headers: Record<string, string>;
  } {
    if (exception instanceof HttpError) {
      return { status: exception.status, message: exception.message, headers: exception.headers };
    }
    if (exception instanceof HttpException) {
      return { status: exception.getStatus(), message: exception.message, headers: {} };
    }
    if (exception instanceof LocksUnavailableError) {
      this.logger.warn(exception.message);
      return { status: 503, message: exception.message, headers: { 'retry-after': '5' } };
    }
    if (exception instanceof DispatchError) {
      switch (exception.code) {
        case 'DISPATCH_UNAVAILABLE':
        case 'DISPATCH_NOT_SERVED':
          return {
            status: 503,
            message: exception.message,
            headers: { 'retry-after': String(exception.retryAfterSeconds) },
          };
        case 'DISPATCH_TIMEOUT':
          this.logger.warn(exception.message);
          return { status: 504, message: exception.message, headers: {} };
        case 'DISPATCH_STREAM_FAILED':
          this.logger.warn(exception.message);
          return { status: 502, message: exception.message, headers: {} };
        case 'DISPATCH_JOB_FAILED':
          this.logger.warn(exception.message);
          return { status: 500, message: exception.message, headers: {} };
      }
    }
    if (exception instanceof P2PError) {
      switch (exception.code) {
        case 'P2P_POOL_CLOSED':
          return { status: 503, message: exception.message, headers: { 'retry-after': '5' } };
        case 'P2P_HANDSHAKE_FAILED':
        case 'P2P_SPAWN_FAILED':
          this.logger.error(exception.message);
          return { status: 502, message: exception.message, headers: {} };
        case 'P2P_ABORTED':
          return { status: 499, message: exception.message, headers: {} };
        default:
          this.logger.warn(exception.message);
          return { status: 500, message: exception.message, headers: {} };
      }
    }
    if (exception instanceof ProtocolError) {
      this.logger.warn(exception.message);
      return { status: 500, message: exception.message, headers: {} };
    }
    this.logger.error(
      exception instanceof Error ? (exception.stack ?? exception.message) : String(exception),
    );
    return { status: 500, message: 'internal server error', headers: {} };
  }
}
