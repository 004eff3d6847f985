/**
 * Building a member's base URL from a host and a port. A leaf module with no imports, so the
 * node, the consensus layer and replication can all share it without an import cycle.
 *
 * @example
 * ```ts
 * nodeUrl('http', '10.0.0.5', 7001); // 'http://10.0.0.5:7001'
 * nodeUrl('https', '::1', 7001); // 'https://[::1]:7001'
 * ```
 */

/**
 * The base URL `scheme://host:port` of a node. An IPv6 literal (any host containing ':') goes
 * in brackets, as RFC 3986 requires — `http://::1:7001` is not a URL; a host already in
 * brackets (`[::1]`, as `URL#hostname` gives it) is kept as it is. Hostnames and IPv4
 * addresses pass through unchanged. The host and port are not validated: callers check them,
 * or parse the result with `new URL`.
 */
export function nodeUrl(scheme: 'http' | 'https', host: string, port: number): string {
  return `${scheme}://${hostPort(host, port)}`;
}

/**
 * `host:port` as a URL authority or a `--listen` value takes it: an IPv6 literal in brackets
 * (`[::1]:7001`), a bracketed one kept, hostnames and IPv4 addresses unchanged.
 */
export function hostPort(host: string, port: number): string {
  return `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
}
