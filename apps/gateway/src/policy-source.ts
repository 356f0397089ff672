/**
 * The policy file in use (`--policy`): read at start (a bad file stops start-up, with the line at
 * fault), then read again on SIGHUP (apps/serve's cli.ts calls reload) and when the file changes
 * (checked by stat once a second, which also sees a ConfigMap's symlink swap). A new file that
 * does not parse is logged and the policy in use is kept. One read at a time; a request for a
 * reload during one reads once more after it.
 */
import { type Stats, unwatchFile, watchFile } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { parsePolicy, PolicyError, type Policy } from '@annex-p2phttp/config';
import { type Logger } from '@annex-p2phttp/metrics';

const WATCH_INTERVAL_MS = 1000;

export async function readPolicyFile(file: string): Promise<Policy> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new PolicyError(
      `--policy ${file}: cannot read it: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    );
  }
  return parsePolicy(text, file);
}

export class PolicySource {
  private reloading: Promise<boolean> | null = null;
  private again = false;
  private watching = false;
  private loads = 0;

  private constructor(
    private readonly file: string,
    private policy: Policy,
    private readonly log: Logger,
  ) {}

  /** Reads the file; throws PolicyError (a ConfigError) when it cannot be used. */
  static async load(file: string, log: Logger): Promise<PolicySource> {
    const source = new PolicySource(file, await readPolicyFile(file), log);
    log.info(`policy ${file}: ${source.policy.rules.length} rules`);
    return source;
  }

  /** Whether some rule names users (who can only use it if logins are on). */
  get namesUsers(): boolean {
    return this.policy.rules.some((rule) => rule.users.size > 0);
  }

  get current(): Policy {
    return this.policy;
  }

  /** Successful reads after the first. */
  get reloads(): number {
    return this.loads;
  }

  /** Reads the file again; true when the new policy is in use. */
  reload(why: string): Promise<boolean> {
    if (this.reloading !== null) {
      this.again = true;
      return this.reloading;
    }
    this.reloading = (async () => {
      let ok = false;
      do {
        this.again = false;
        try {
          this.policy = await readPolicyFile(this.file);
          this.loads += 1;
          ok = true;
          this.log.info(`policy reloaded (${why}): ${this.policy.rules.length} rules`, {
            file: this.file,
          });
        } catch (error) {
          ok = false;
          const message = error instanceof Error ? error.message : String(error);
          this.log.error(`policy not reloaded (${why}), keeping the one in use: ${message}`, {
            file: this.file,
          });
        }
      } while (this.again);
      return ok;
    })().finally(() => {
      this.reloading = null;
    });
    return this.reloading;
  }

  /** Reloads whenever the file changes, until close(). */
  watch(): void {
    if (this.watching) {
      return;
    }
    this.watching = true;
    watchFile(this.file, { interval: WATCH_INTERVAL_MS, persistent: false }, this.changed);
  }

  close(): void {
    if (this.watching) {
      this.watching = false;
      unwatchFile(this.file, this.changed);
    }
  }

  private readonly changed = (now: Stats, before: Stats): void => {
    if (
      now.mtimeMs !== before.mtimeMs ||
      now.ino !== before.ino ||
      now.size !== before.size ||
      now.ctimeMs !== before.ctimeMs
    ) {
      void this.reload('the file changed');
    }
  };
}
