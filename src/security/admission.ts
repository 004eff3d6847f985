/**
 * Admission of client requests against exhaustion: at most `clientRequestsInFlightMax`
 * requests in flight per client (its bearer token's name, else its remote address), 429
 * TOO_MANY_REQUESTS past it, and at most `requestsInFlightMax` on the node in all, 503
 * OVERLOADED past it. Both answers carry Retry-After and say which limit was hit.
 *
 * A request counts from admission until its answer is written, so a slow leader or a stuck
 * disk turns into refusals at the door instead of an unbounded queue of proposals and
 * buffered bodies. Memory is bounded too: a client's counter is removed at zero, so at most
 * `requestsInFlightMax` counters exist.
 */
import { resolveSecurityLimits, type SecurityLimits } from '../config.js';
import { PhantomError } from '../errors.js';

/** Counts client requests in flight; see the module comment. */
export class AdmissionControl {
  readonly limits: SecurityLimits;
  private readonly perClient = new Map<string, number>();
  private total = 0;

  constructor(limits: Partial<SecurityLimits> = {}) {
    this.limits = resolveSecurityLimits(limits);
  }

  /**
   * Admits a request of `client` (null: a request that another node already admitted, which
   * counts only towards the node's total) or throws a PhantomError TOO_MANY_REQUESTS /
   * OVERLOADED. Returns the function that ends it (idempotent).
   */
  admit(client: string | null): () => void {
    if (this.total >= this.limits.requestsInFlightMax) {
      throw new PhantomError(
        'OVERLOADED',
        `Cannot take the request: ${this.total} requests are in flight on this node, the limit is ${this.limits.requestsInFlightMax}; retry later`,
      );
    }
    const held = client === null ? 0 : (this.perClient.get(client) ?? 0);
    if (client !== null && held >= this.limits.clientRequestsInFlightMax) {
      throw new PhantomError(
        'TOO_MANY_REQUESTS',
        `Cannot take the request: this client has ${held} requests in flight, the limit is ${this.limits.clientRequestsInFlightMax}; wait for answers before sending more`,
      );
    }
    this.total++;
    if (client !== null) this.perClient.set(client, held + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.total--;
      if (client === null) return;
      const left = (this.perClient.get(client) ?? 1) - 1;
      if (left <= 0) this.perClient.delete(client);
      else this.perClient.set(client, left);
    };
  }
}
