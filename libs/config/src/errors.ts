/**
 * A problem with the configuration the user gave (command line, environment, served repositories).
 * The message is meant for the user as is: it names the offending option(s), one problem per line
 * when there are several.
 */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
    Object.setPrototypeOf(this, new.target.prototype);
  }
}

/**
 * `--help` (or `-h`) was given. Not a failure: the message is the help text, which the caller
 * prints to stdout before exiting with status 0. A subclass of ConfigError so that a caller that
 * only knows ConfigError still stops before serving.
 */
export class HelpRequested extends ConfigError {
  constructor(readonly helpText: string) {
    super(helpText);
    this.name = 'HelpRequested';
  }
}
