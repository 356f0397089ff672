// Plain decimal numbers of the line protocol (PROTOCOL.md §1.2: digits only, no sign).

const DIGITS = /^[0-9]+$/;

/** Parses a run of decimal digits; undefined unless it is digits only and a safe integer. */
export function parseDecimal(text: string): number | undefined {
  if (!DIGITS.test(text)) {
    return undefined;
  }
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** True for a number that can be written as plain decimal digits. */
export function isWritableDecimal(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}
