/**
 * Nest's messages in the project's log: the same JSON or text lines as everything else, never
 * Nest's own coloured output. Nest's `log` level is its start-up chatter (modules loaded, routes
 * mapped), so it becomes debug here; warnings and errors stay what they are.
 */
import { type LoggerService } from '@nestjs/common';
import { type Logger, type LogLevel } from '@annex-p2phttp/metrics';

function text(message: unknown): string {
  if (message instanceof Error) {
    return message.message;
  }
  return typeof message === 'string' ? message : JSON.stringify(message);
}

export class NestLogger implements LoggerService {
  constructor(private readonly logger: Logger) {}

  log(message: unknown, ...rest: unknown[]): void {
    this.write('debug', message, rest);
  }

  error(message: unknown, ...rest: unknown[]): void {
    this.write('error', message, rest);
  }

  warn(message: unknown, ...rest: unknown[]): void {
    this.write('warn', message, rest);
  }

  debug(message: unknown, ...rest: unknown[]): void {
    this.write('debug', message, rest);
  }

  verbose(message: unknown, ...rest: unknown[]): void {
    this.write('debug', message, rest);
  }

  fatal(message: unknown, ...rest: unknown[]): void {
    this.write('error', message, rest);
  }

  /** Nest passes the context (a class name) last, and for errors a stack before it. */
  private write(level: LogLevel, message: unknown, rest: unknown[]): void {
    if (!this.logger.enabled(level)) {
      return;
    }
    const context = rest.length > 0 && typeof rest.at(-1) === 'string' ? rest.at(-1) : undefined;
    this.logger.log(level, text(message), { context });
  }
}
