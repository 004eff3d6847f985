/**
 * A secret (the cluster secret, a region secret, a TLS key passphrase) held so that it cannot
 * leak by accident: logging it, printing it, putting it in a template string or a JSON body
 * shows `[redacted]`, never its bytes. Only {@link Secret.reveal} gives them out, for the one
 * place that needs them (deriving a key, opening a TLS key).
 */
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';

/** Shortest secret accepted, in bytes: 128 bits of a random hex or base64 string and more. */
export const secretBytesMin = 16;

/** A secret value that prints as `[redacted]`; see the module comment. */
export class Secret {
  readonly #bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    this.#bytes = Uint8Array.from(bytes);
  }

  /** A secret from text (its UTF-8 bytes). */
  static fromText(text: string): Secret {
    return new Secret(new TextEncoder().encode(text));
  }

  /** The secret's bytes (a copy). */
  reveal(): Uint8Array {
    return Uint8Array.from(this.#bytes);
  }

  /** The secret's bytes as UTF-8 text (a TLS passphrase). */
  revealText(): string {
    return new TextDecoder().decode(this.#bytes);
  }

  /** Length in bytes, for validation messages. */
  get length(): number {
    return this.#bytes.length;
  }

  toString(): string {
    return '[redacted]';
  }

  toJSON(): string {
    return '[redacted]';
  }

  [inspect.custom](): string {
    return 'Secret [redacted]';
  }
}

/**
 * Reads a secret from a file: its content without the final newline (as `echo` writes it) and
 * without surrounding whitespace. Throws an Error naming the file, never its content.
 */
export function readSecretFile(file: string): Secret {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`Cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, {
      cause: error,
    });
  }
  return Secret.fromText(text.trim());
}
