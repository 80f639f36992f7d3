// Redis from the machine's redis-server (Debian: redis-server): one in-memory instance per workspace with a password,
// TCP on 127.0.0.1 only, nothing saved to disk, so it starts empty with every server; commands that reach beyond the
// data (CONFIG, MODULE, DEBUG, replication) are disabled.
import fs from "node:fs/promises";
import path from "node:path";
import { findBinary, type ServiceSpec } from "./common.js";

/** Commands that would let a client write files where Redis can, load code into it, or make it sync from elsewhere. */
const DISABLED = ["CONFIG", "MODULE", "DEBUG", "REPLICAOF", "SLAVEOF", "SYNC", "PSYNC", "MIGRATE"];

export const redis: ServiceSpec = {
  name: "redis",
  debianPackage: "redis-server",
  defaultPort: 6379,
  accounts: ["redis", "nobody"],
  stopSignal: "SIGTERM",

  async checkBinaries() {
    await findBinary("redis-server", redis);
  },

  async prepare() {},

  /** The settings go in a file only the service's account reads, so the password never shows in `ps`. */
  async command(place) {
    const conf = path.join(place.dir, "redis.conf");
    const settings = [
      `bind 127.0.0.1`,
      `port ${place.port}`,
      `requirepass ${place.password}`,
      `dir ${place.dir}`,
      `save ""`,
      "appendonly no",
      "daemonize no",
      `logfile ""`,
      "protected-mode yes",
      // Redis runs outside bubblewrap: no moving its files (CONFIG SET dir), loading code (MODULE) or replicating.
      ...DISABLED.map((command) => `rename-command ${command} ""`),
    ];
    await fs.writeFile(conf, `${settings.join("\n")}\n`, { mode: 0o600 });
    const owner = await fs.stat(place.dir);
    await fs.chown(conf, owner.uid, owner.gid);
    return [await findBinary("redis-server", redis), conf];
  },

  async ready(_place, log) {
    return log.includes("Ready to accept connections");
  },

  env(place) {
    return { REDIS_URL: `redis://default:${place.password}@127.0.0.1:${place.port}/0` };
  },
};
