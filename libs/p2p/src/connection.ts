/**
 * One P2P session over a Transport, as an explicit state machine (PROTOCOL.md §1.3-§1.5):
 *
 *   handshake ──(AUTH-SUCCESS, VERSION, BYPASS)──▶ idle ◀──▶ busy
 *        │                                           │         │
 *        └──────────────── error / EOF / close ──────┴─────────┴──▶ closed
 *
 * One operation runs at a time (`begin`/`finish`). An operation that cannot leave the session at a
 * message boundary (a truncated DATA, an aborted HTTP client, an unexpected reply) closes it: a
 * connection is reused only when it finished cleanly. Closing ends the transport, which ends the
 * child process, on every path.
 */
import {
  encodeMessage,
  P2PStreamParser,
  ProtocolError,
  type ClientMessage,
  type ParserEvent,
  type ServerMessage,
} from '@annex-p2phttp/protocol';
import { ConnectionClosedError, P2PError } from './errors';
import { type Transport } from './transport';

export type ConnectionState = 'handshake' | 'idle' | 'busy' | 'closed';

export interface HandshakeOptions {
  /** The UUID the peer must announce in AUTH-SUCCESS. */
  readonly serverUuid: string;
  /** P2P protocol version to negotiate; 0 sends no VERSION. */
  readonly version: number;
  /** Gateways to bypass (sent as BYPASS at version 2 and later). */
  readonly bypass: readonly string[];
  /** Handshake deadline. */
  readonly timeoutMs?: number;
}

/** Queue this many bytes from the peer before pausing it. */
const HIGH_WATER_BYTES = 1 << 20;
/** Payload bytes queued toward the peer before a write waits for it to catch up. */
const WRITE_AHEAD_BYTES = 1 << 20;
const STDERR_TAIL_BYTES = 4096;
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 30_000;

type Waiter = { resolve: (event: ParserEvent) => void; reject: (error: Error) => void };

export class P2PConnection {
  private stateValue: ConnectionState = 'handshake';
  private readonly parser = new P2PStreamParser();
  private readonly events: ParserEvent[] = [];
  private queuedBytes = 0;
  private waiter: Waiter | null = null;
  private failure: Error | null = null;
  private stderrTail = '';
  private negotiatedVersion = 0;
  private answeredValue = false;
  private readonly closeListeners: Array<(error: Error) => void> = [];
  /** Time of the last state change to idle, for pool bookkeeping. */
  lastUsed = Date.now();

  private constructor(readonly transport: Transport) {
    transport.input.on('data', (chunk: Buffer) => this.onInput(chunk));
    transport.input.on('end', () => this.onInputEnd());
    transport.input.on('error', (error: Error) =>
      this.fail(new ConnectionClosedError(`read from peer failed: ${error.message}`)),
    );
    transport.output.on('error', (error: Error) =>
      this.fail(new ConnectionClosedError(`write to peer failed: ${error.message}`)),
    );
    transport.diagnostics?.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL_BYTES);
    });
    void transport.exited.then(() => {
      // Let stdout and stderr deliver what the peer wrote before it exited.
      setImmediate(() => this.fail(new ConnectionClosedError('peer exited', this.stderr)));
    });
  }

  /** Opens a session: waits for AUTH-SUCCESS, negotiates the version and sends BYPASS. */
  static async open(transport: Transport, options: HandshakeOptions): Promise<P2PConnection> {
    const connection = new P2PConnection(transport);
    const timeoutMs = options.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    const timer = setTimeout(
      () =>
        connection.fail(
          new P2PError('P2P_HANDSHAKE_FAILED', `no handshake within ${timeoutMs} ms`),
        ),
      timeoutMs,
    );
    try {
      const auth = await connection.expectMessage();
      if (auth.kind !== 'AUTH-SUCCESS' || auth.uuid !== options.serverUuid) {
        throw new P2PError(
          'P2P_HANDSHAKE_FAILED',
          `expected AUTH-SUCCESS ${options.serverUuid}, got ${describe(auth)}`,
        );
      }
      if (options.version > 0) {
        await connection.send({ kind: 'VERSION', version: options.version });
        const reply = await connection.expectMessage();
        if (reply.kind !== 'VERSION') {
          throw new P2PError('P2P_HANDSHAKE_FAILED', `expected VERSION, got ${describe(reply)}`);
        }
        connection.negotiatedVersion = Math.min(reply.version, options.version);
        if (connection.negotiatedVersion >= 2 && options.bypass.length > 0) {
          await connection.send({ kind: 'BYPASS', uuids: [...options.bypass] });
        }
      }
      connection.stateValue = 'idle';
      return connection;
    } catch (error) {
      const reason = connection.failure ?? asError(error);
      connection.close(reason);
      throw reason instanceof P2PError && reason.code === 'P2P_HANDSHAKE_FAILED'
        ? reason
        : new P2PError('P2P_HANDSHAKE_FAILED', `cannot open a session: ${reason.message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  get version(): number {
    return this.negotiatedVersion;
  }

  get closed(): boolean {
    return this.stateValue === 'closed';
  }

  /** What the peer last wrote on stderr (for error messages). */
  get stderr(): string {
    return this.stderrTail.trim();
  }

  /** Starts an operation; only an idle connection can. */
  begin(): void {
    if (this.stateValue !== 'idle') {
      throw new P2PError('P2P_BUSY', `connection is ${this.stateValue}, not idle`);
    }
    this.stateValue = 'busy';
    this.answeredValue = false;
  }

  /** Whether the peer said anything since the current operation began. */
  get answered(): boolean {
    return this.answeredValue;
  }

  /**
   * Ends an operation. The session must be at a message boundary with nothing unread; otherwise it
   * cannot be reused and is closed. Returns whether the connection is reusable.
   */
  finish(): boolean {
    if (this.stateValue !== 'busy') {
      return false;
    }
    if (this.parser.inData || this.events.length > 0) {
      this.close(new ProtocolError('operation ended with unread data from the peer'));
      return false;
    }
    this.stateValue = 'idle';
    this.lastUsed = Date.now();
    return true;
  }

  /** Sends one message; resolves when the transport accepted it (respects backpressure). */
  send(message: ClientMessage): Promise<void> {
    return this.write(encodeMessage(message));
  }

  /** Writes raw payload bytes (after a DATA line); resolves when the transport can take more. */
  write(bytes: Buffer): Promise<void> {
    if (this.failure) {
      return Promise.reject(this.failure);
    }
    const output = this.transport.output;
    // Let up to WRITE_AHEAD_BYTES queue before waiting: the stream then hands the peer several
    // chunks per system call instead of waking up for each one.
    if (output.write(bytes) || output.writableLength < WRITE_AHEAD_BYTES) {
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const onDrain = () => {
        cleanup();
        resolve();
      };
      const onClose = (error: Error) => {
        cleanup();
        reject(error);
      };
      const cleanup = () => {
        output.off('drain', onDrain);
        const index = this.closeListeners.indexOf(onClose);
        if (index >= 0) {
          this.closeListeners.splice(index, 1);
        }
      };
      output.on('drain', onDrain);
      this.closeListeners.push(onClose);
    });
  }

  /** The next event from the peer: a message, a payload chunk, or the end of a payload. */
  next(): Promise<ParserEvent> {
    const event = this.events.shift();
    if (event) {
      if (event.type === 'data') {
        this.queuedBytes -= event.chunk.length;
      }
      if (this.queuedBytes < HIGH_WATER_BYTES && this.transport.input.isPaused()) {
        this.transport.input.resume();
      }
      return Promise.resolve(event);
    }
    if (this.failure) {
      return Promise.reject(this.failure);
    }
    if (this.waiter) {
      return Promise.reject(new P2PError('P2P_BUSY', 'concurrent read on a P2P connection'));
    }
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** The next event, which must be a message (not payload bytes). */
  async expectMessage(): Promise<ServerMessage> {
    const event = await this.next();
    if (event.type !== 'message') {
      const error = new ProtocolError(`expected a message, got ${event.type}`);
      this.close(error);
      throw error;
    }
    return event.message;
  }

  /** Registers a listener called once when the connection closes, for whatever reason. */
  onClose(listener: (error: Error) => void): void {
    if (this.failure) {
      listener(this.failure);
      return;
    }
    this.closeListeners.push(listener);
  }

  /** Closes the session and ends the transport. Idempotent. */
  close(reason: Error = new ConnectionClosedError('connection closed')): void {
    this.fail(reason);
  }

  /**
   * Closes the session by ending the peer's input after everything written so far (Transport
   * `end`), and resolves once the peer is gone. Used when a payload is cut short: the peer
   * keeps every byte it was sent.
   */
  async closeAfterWrites(reason: Error): Promise<void> {
    this.fail(reason, true);
    await this.transport.exited;
  }

  private onInput(chunk: Buffer): void {
    if (this.failure) {
      return;
    }
    let parsed: ParserEvent[];
    try {
      parsed = this.parser.push(chunk);
    } catch (error) {
      this.fail(asError(error));
      return;
    }
    for (const event of parsed) {
      this.answeredValue = true;
      if (this.stateValue === 'idle') {
        // A peer speaking while no operation asked it to is out of protocol.
        this.fail(new ProtocolError(`unsolicited ${describeEvent(event)} from peer`));
        return;
      }
      if (this.waiter) {
        const { resolve } = this.waiter;
        this.waiter = null;
        resolve(event);
      } else {
        this.events.push(event);
        if (event.type === 'data') {
          this.queuedBytes += event.chunk.length;
        }
      }
    }
    if (this.queuedBytes >= HIGH_WATER_BYTES) {
      this.transport.input.pause();
    }
  }

  private onInputEnd(): void {
    try {
      this.parser.end();
    } catch {
      // A stream cut mid-line or mid-payload; the closed-connection error below says enough.
    }
    setImmediate(() =>
      this.fail(new ConnectionClosedError('peer closed the connection', this.stderr)),
    );
  }

  private fail(error: Error, graceful = false): void {
    if (this.failure) {
      return;
    }
    this.failure =
      error instanceof ConnectionClosedError && !error.stderr && this.stderr
        ? new ConnectionClosedError(error.message, this.stderr)
        : error;
    this.stateValue = 'closed';
    if (graceful && this.transport.end) {
      this.transport.end();
    } else {
      this.transport.destroy();
    }
    if (this.waiter) {
      const { reject } = this.waiter;
      this.waiter = null;
      reject(this.failure);
    }
    for (const listener of this.closeListeners.splice(0)) {
      listener(this.failure);
    }
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

export function describe(message: ServerMessage): string {
  return message.kind === 'ERROR' ? `ERROR ${message.message}` : message.kind;
}

function describeEvent(event: ParserEvent): string {
  return event.type === 'message' ? describe(event.message) : `${event.type} bytes`;
}
