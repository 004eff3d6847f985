/**
 * Domain errors with stable codes, and the one table that maps a code to an HTTP status.
 *
 * Three tiers (see STYLE.md): expected storage conditions are values or sentinel errors;
 * caller mistakes are `TypeError` / `RangeError`; domain failures are {@link PhantomError}
 * subclasses whose `code` never changes once published.
 */

/** Every stable error code, with the HTTP status it is answered with. */
export const httpStatusByCode = {
  NOT_LEADER: 421,
  NO_LEADER: 503,
  TIMEOUT: 504,
  SHUT_DOWN: 503,
  PROPOSAL_DROPPED: 503,
  LEADERSHIP_TRANSFER: 503,
  CONF_CHANGE_IN_PROGRESS: 409,
  STORAGE_FAILED: 507,
  DISK_FULL: 507,
  CORRUPT_LOG: 500,
  BAD_REQUEST: 400,
  BAD_KEY: 400,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  PRECONDITION_FAILED: 412,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  TOO_MANY_REQUESTS: 429,
  OVERLOADED: 503,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  REGION_UNAVAILABLE: 503,
  UNKNOWN_MEMBER: 404,
  KEY_NOT_FOUND: 404,
  MEMBER_EXISTS: 409,
  UNKNOWN_REGION: 404,
  PEER_UNREACHABLE: 503,
  INTERNAL: 500,
} as const;

/** A stable error code. */
export type ErrorCode = keyof typeof httpStatusByCode;

/** Base class of every domain error: a stable `code` and a message that says what to do. */
export class PhantomError extends Error {
  override readonly name: string = 'PhantomError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** The HTTP status this error is answered with. */
  get httpStatus(): number {
    return httpStatusByCode[this.code];
  }
}

/** This node is not the leader; `leaderId` is the leader it knows of ('' when none). */
export class NotLeaderError extends PhantomError {
  override readonly name = 'NotLeaderError';
  constructor(
    readonly leaderId: string,
    message = leaderId === ''
      ? 'Cannot propose: this node is not the leader and knows no leader'
      : `Cannot propose: this node is not the leader; the leader is ${leaderId}`,
  ) {
    super(leaderId === '' ? 'NO_LEADER' : 'NOT_LEADER', message);
  }
}

/** An operation did not finish in time; it may still take effect later. */
export class TimeoutError extends PhantomError {
  override readonly name = 'TimeoutError';
  constructor(message: string) {
    super('TIMEOUT', message);
  }
}

/** The component was shut down (or never initialized) before the operation finished. */
export class ShutdownError extends PhantomError {
  override readonly name = 'ShutdownError';
  constructor(message = 'Cannot complete: the node is shut down') {
    super('SHUT_DOWN', message);
  }
}

/** A proposal was overwritten by another leader's entry and will never be applied. */
export class ProposalDroppedError extends PhantomError {
  override readonly name = 'ProposalDroppedError';
  constructor(message: string) {
    super('PROPOSAL_DROPPED', message);
  }
}

/** Storage can no longer accept writes (disk full, I/O error); reads may still be served. */
export class StorageError extends PhantomError {
  override readonly name = 'StorageError';
  constructor(
    code: 'STORAGE_FAILED' | 'DISK_FULL' | 'CORRUPT_LOG',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** Input from a client or peer that is malformed or out of bounds. */
export class BadRequestError extends PhantomError {
  override readonly name = 'BadRequestError';
  constructor(
    message: string,
    code:
      'BAD_REQUEST' | 'BAD_KEY' | 'PAYLOAD_TOO_LARGE' | 'UNSUPPORTED_MEDIA_TYPE' = 'BAD_REQUEST',
  ) {
    super(code, message);
  }
}
