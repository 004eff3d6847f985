/**
 * TLS for a node (`--tls-cert`, `--tls-key`, `--tls-ca`, `--tls-key-passphrase`): one
 * certificate for the listener that carries the client API, peer RPCs and region traffic, and
 * the same certificate, with the CA, for the connections this node opens to peers, to its
 * leader (forwarding) and to other regions.
 *
 * What uWebSockets.js 20.30 (the server under hyper-express) supports, found by trying it:
 * `cert_file_name`, `key_file_name`, `passphrase`, `ca_file_name`, `dh_params_file_name`,
 * `ssl_ciphers`, `ssl_prefer_low_memory_usage`. With `ca_file_name` it asks clients for a
 * certificate and refuses the handshake of one that presents a certificate the CA did not sign,
 * but it lets a client without a certificate in, and does not tell the request handler whether
 * one was presented. So client certificates cannot be required here: the cluster secret
 * authenticates peers and regions, bearer tokens authenticate clients, and TLS adds encryption,
 * the server's identity, and the refusal of certificates from another CA.
 *
 * Files are read and checked once at start (Node's own TLS parses them), so a wrong path, a
 * key that does not match its certificate or a wrong passphrase stops the node with a clear
 * message instead of a listener that fails every handshake.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createSecureContext, type ConnectionOptions } from 'node:tls';
import type { Secret } from './secret.js';

/** The TLS files a node was given. */
export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** CA bundle to verify peers and regions (and clients' certificates); null: system CAs. */
  readonly caFile: string | null;
  /** Passphrase of an encrypted key. */
  readonly passphrase: Secret | null;
}

/** A problem with the TLS files; the message names the file, never the passphrase. */
export class TlsConfigError extends Error {
  override readonly name = 'TlsConfigError';
}

/** Options of a uWebSockets.js SSLApp, as hyper-express passes them on. */
export interface TlsServerOptions {
  readonly cert_file_name: string;
  readonly key_file_name: string;
  readonly ca_file_name?: string;
  readonly passphrase?: string;
}

/** Loaded, checked TLS settings; see the module comment. */
export class TlsSettings {
  private constructor(
    readonly files: TlsFiles,
    private readonly cert: Buffer,
    private readonly key: Buffer,
    private readonly ca: Buffer | null,
  ) {}

  /** Reads the files and checks that they make a usable context; throws {@link TlsConfigError}. */
  static load(given: TlsFiles): TlsSettings {
    const files: TlsFiles = {
      certFile: path.resolve(given.certFile),
      keyFile: path.resolve(given.keyFile),
      caFile: given.caFile === null ? null : path.resolve(given.caFile),
      passphrase: given.passphrase,
    };
    const cert = readPem(files.certFile, '--tls-cert');
    const key = readPem(files.keyFile, '--tls-key');
    const ca = files.caFile === null ? null : readPem(files.caFile, '--tls-ca');
    try {
      createSecureContext({
        cert,
        key,
        ...(files.passphrase === null ? {} : { passphrase: files.passphrase.revealText() }),
        ...(ca === null ? {} : { ca }),
      });
    } catch (error) {
      const reason = (error as { code?: string; message?: string }).code ?? 'unusable';
      throw new TlsConfigError(
        `Cannot use --tls-cert ${files.certFile} with --tls-key ${files.keyFile}${files.caFile === null ? '' : ` and --tls-ca ${files.caFile}`}: ${reason} (a key that does not match the certificate, a wrong or missing passphrase, or not PEM)`,
      );
    }
    return new TlsSettings(files, cert, key, ca);
  }

  /** Options for hyper-express's `Server` (absolute paths, as uWS reads the files itself). */
  serverOptions(): TlsServerOptions {
    return {
      cert_file_name: this.files.certFile,
      key_file_name: this.files.keyFile,
      ...(this.files.caFile === null ? {} : { ca_file_name: this.files.caFile }),
      ...(this.files.passphrase === null ? {} : { passphrase: this.files.passphrase.revealText() }),
    };
  }

  /**
   * Options for the connections this node opens (undici's `connect`): verify the server against
   * the CA (the system's when none was given) and present this node's certificate when asked.
   */
  connectOptions(): ConnectionOptions {
    return {
      cert: this.cert,
      key: this.key,
      ...(this.files.passphrase === null ? {} : { passphrase: this.files.passphrase.revealText() }),
      ...(this.ca === null ? {} : { ca: this.ca }),
      rejectUnauthorized: true,
    };
  }
}

function readPem(file: string, flag: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    throw new TlsConfigError(
      `Cannot read ${flag} ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  if (!bytes.includes('-----BEGIN ')) {
    throw new TlsConfigError(`Cannot use ${flag} ${file}: it is not a PEM file`);
  }
  return bytes;
}
