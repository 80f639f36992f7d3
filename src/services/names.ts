/** Services the server can start for a workspace (--service NAME[:PORT]). */
export const SERVICE_NAMES = ["postgres", "redis"] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export interface ServiceRequest {
  name: ServiceName;
  /** Fixed port; default: the service's usual one in the workspace network, a free one on the host's. */
  port?: number;
}

/** Parses `name` or `name:port`; returns the problem as text when the spelling is wrong. */
export function parseServiceRequest(raw: string): ServiceRequest | string {
  const [name, port, ...rest] = raw.split(":");
  if (!(SERVICE_NAMES as readonly string[]).includes(name!))
    return `unknown service "${name}" (known: ${SERVICE_NAMES.join(", ")})`;
  if (port === undefined) return { name: name as ServiceName };
  const n = Number(port);
  if (rest.length || !Number.isInteger(n) || n < 1 || n > 65_535)
    return `"${raw}" is not NAME:PORT with a port from 1 to 65535`;
  return { name: name as ServiceName, port: n };
}
