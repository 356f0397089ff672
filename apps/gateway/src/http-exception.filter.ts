/**
 * The one exception filter: HttpError keeps its status and message, Nest's own HTTP exceptions
 * (e.g. an unknown route) keep their status, an error with a stable code is answered as the table
 * in error-status.ts says (P2P failures 500, 502 when a session could not be set up, 503 with
 * Retry-After while shutting down or when Redis, a proxy worker, the locks or the authorization
 * hook are unavailable, 504 when no answer came in time, 499 for a client that went away), and
 * anything else is 500. Error bodies are plain text, as the reference sends them; nothing is
 * written once headers are out.
 */
import {
  type ArgumentsHost,
  Catch,
  type ExceptionFilter,
  HttpException,
  Logger,
} from '@nestjs/common';
import { AnnexP2PError } from '@annex-p2phttp/protocol';
import { type FastifyReply } from 'fastify';
import { httpAnswer } from './error-status';
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
    if (exception instanceof AnnexP2PError) {
      const answer = httpAnswer(exception);
      switch (answer.log) {
        case 'warn':
          this.logger.warn(exception.message);
          break;
        case 'error':
          this.logger.error(exception.message);
          break;
        case 'stack':
          this.logger.error(exception.stack ?? exception.message);
          break;
        case 'none':
          break;
      }
      return answer;
    }
    this.logger.error(
      exception instanceof Error ? (exception.stack ?? exception.message) : String(exception),
    );
    return { status: 500, message: 'internal server error', headers: {} };
  }
}
