// PostgreSQL from the machine's binaries (Debian: /usr/lib/postgresql/<major>/bin): one cluster per workspace, a
// database owned by the role "app" with a password, TCP on 127.0.0.1 only, no Unix socket. The server runs outside
// bubblewrap, so "app" is no superuser: no COPY … PROGRAM, no server-side file access, no untrusted languages.
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { findBinary, runHelper, type ServicePlace, type ServiceSpec } from "./common.js";

const USER = "app";
const DATABASE = "app";
/** The bootstrap superuser: its password is random and thrown away; setup uses single-user mode. */
const ADMIN = "bdm_admin";

/** Debian keeps the server binaries off PATH, one folder per major version: newest first. */
function debianBinDirs(): string[] {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((v) => /^\d+(\.\d+)?$/.test(v))
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => path.join(root, v, "bin"));
}

const binary = (name: string) => findBinary(name, postgres, debianBinDirs());
const data = (place: ServicePlace) => path.join(place.dir, "data");

export const postgres: ServiceSpec = {
  name: "postgres",
  debianPackage: "postgresql",
  defaultPort: 5432,
  accounts: ["postgres"],
  // SIGINT is PostgreSQL's fast shutdown: clients are disconnected, the data stays consistent.
  stopSignal: "SIGINT",

  async checkBinaries() {
    await Promise.all(["initdb", "postgres"].map(binary));
  },

  async prepare(place) {
    if (existsSync(path.join(data(place), "PG_VERSION"))) return;
    await fs.rm(data(place), { recursive: true, force: true });
    const [initdb, server] = await Promise.all([binary("initdb"), binary("postgres")]);
    // initdb reads the superuser's password from a file the service's account can read; it goes right after.
    const pwfile = path.join(place.dir, "initdb.pw");
    await fs.writeFile(pwfile, randomBytes(24).toString("hex"), { mode: 0o600 });
    const stat = await fs.stat(place.dir);
    await fs.chown(pwfile, stat.uid, stat.gid);
    try {
      const options = [
        "-U",
        ADMIN,
        "--auth=scram-sha-256",
        `--pwfile=${pwfile}`,
        "-E",
        "UTF8",
        "--locale=C",
        "--no-instructions",
      ];
      await runHelper(place.asAccount([initdb, "-D", data(place), ...options]), "initdb");
    } finally {
      await fs.rm(pwfile, { force: true });
    }
    // Single-user mode creates the role and its database without opening any port.
    const sql = [
      `CREATE ROLE ${USER} LOGIN NOSUPERUSER NOCREATEROLE NOREPLICATION PASSWORD '${place.password}';`,
      `CREATE DATABASE ${DATABASE} OWNER ${USER};`,
    ];
    const single = [server, "--single", "-D", data(place), "-c", "unix_socket_directories=", "postgres"];
    await runHelper(place.asAccount(single), "creating the database", `${sql.join("\n")}\n`);
  },

  async command(place) {
    const settings = [
      "listen_addresses=127.0.0.1",
      "unix_socket_directories=",
      "logging_collector=off",
      "max_connections=50",
    ];
    return [
      await binary("postgres"),
      "-D",
      data(place),
      "-p",
      String(place.port),
      ...settings.flatMap((s) => ["-c", s]),
    ];
  },

  /** postmaster.pid's eighth line says "ready" once connections are accepted (what pg_ctl -w reads). */
  async ready(place) {
    const pidFile = await fs.readFile(path.join(data(place), "postmaster.pid"), "utf8").catch(() => "");
    return pidFile.split("\n")[7]?.trim() === "ready";
  },

  env(place) {
    const url = `postgresql://${USER}:${place.password}@127.0.0.1:${place.port}/${DATABASE}`;
    return {
      DATABASE_URL: url,
      PGHOST: "127.0.0.1",
      PGPORT: String(place.port),
      PGUSER: USER,
      PGPASSWORD: place.password,
      PGDATABASE: DATABASE,
    };
  },
};
