/**
 * Security of a node: signed peer and region RPCs ({@link RequestSigner}), bearer tokens with
 * scopes ({@link TokenStore}), TLS settings ({@link TlsSettings}), admission limits
 * ({@link AdmissionControl}) and secrets that never print ({@link Secret}).
 */
export { AdmissionControl } from './admission.js';
export { readSignedBody, type ReadSignedBodyOptions } from './authenticate.js';
export {
  NonceGuard,
  RequestSigner,
  UnauthorizedError,
  signatureHeader,
  signedHeaders,
  type RequestSignerOptions,
  type SignaturePurpose,
  type SignatureClaim,
  type SignedRequest,
} from './request-signer.js';
export { Secret, readSecretFile, secretBytesMin } from './secret.js';
export { TlsConfigError, TlsSettings, type TlsFiles, type TlsServerOptions } from './tls.js';
export {
  ForbiddenError,
  TokenStore,
  TokensFileError,
  tokenDigestOf,
  tokenScopes,
  type TokenIdentity,
  type TokenScope,
} from './tokens.js';
