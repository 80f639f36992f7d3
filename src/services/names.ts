/** Services the server can start for a workspace (--service NAME). */
export const SERVICE_NAMES = ["postgres", "redis"] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];
