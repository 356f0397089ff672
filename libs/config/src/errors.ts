import { AnnexP2PError } from '@annex-p2phttp/protocol';

type ConfigErrorCode = 'CONFIG_INVALID' | 'CONFIG_POLICY_INVALID' | 'CONFIG_HELP_REQUESTED';

/**
 * A problem with the configuration the user gave (command line, environment, served repositories).
 * The message is meant for the user as is: it names the offending option(s), one problem per line
 * when there are several.
 */
export class ConfigError extends AnnexP2PError {
  declare readonly code: ConfigErrorCode;

  constructor(message: string, code: ConfigErrorCode = 'CONFIG_INVALID') {
    super(code, message);
    this.name = 'ConfigError';
  }
}

/**
 * `--help` (or `-h`) was given. Not a failure: the message is the help text, which the caller
 * prints to stdout before exiting with status 0. A subclass of ConfigError so that a caller that
 * only knows ConfigError still stops before serving.
 */
export class HelpRequested extends ConfigError {
  constructor(readonly helpText: string) {
    super(helpText, 'CONFIG_HELP_REQUESTED');
    this.name = 'HelpRequested';
  }
}
