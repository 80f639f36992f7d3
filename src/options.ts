// The server's command-line options, declared once: parsing, validation, `--help` and `init` all derive from this table.
import { parseArgs, type ParseArgsConfig } from "node:util";
import { THINKING_SETTINGS, type ThinkingSetting } from "./task/model-options.js";
import { pkg } from "./paths.js";
import { parseServiceRequest, type ServiceRequest } from "./services/names.js";

/** A command-line mistake: the message says what was wrong; the process exits 2. */
export class UsageError extends Error {}

interface Spec<T> {
  /** Placeholder shown in --help; absent for a flag. */
  arg?: string;
  short?: string;
  multiple?: boolean;
  help: string;
  /** Turns the raw value(s) into the typed one; throws UsageError with what is accepted. */
  parse: (raw: string | boolean | string[] | undefined, flag: string) => T;
}

const fail = (message: string): never => {
  throw new UsageError(message);
};

const wholeNumber = (fallback: number) => (raw: unknown, flag: string) => {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  return Number.isInteger(n) && n >= 1 ? n : fail(`${flag} takes a whole number of at least 1 (got "${raw}")`);
};

const text = (raw: unknown) => (raw === undefined ? undefined : String(raw));
const list = (raw: unknown) => (Array.isArray(raw) ? raw.map(String) : []);
const flag = (raw: unknown) => raw === true;

export const SERVER_OPTIONS = {
  workspace: {
    arg: "DIR",
    short: "w",
    help: "Folder the tools may read and write (default: the client's first MCP root, else the current folder)",
    parse: text,
  },
  sandbox: {
    arg: "MODE",
    help: "OS sandbox for Run: auto (default: on when bubblewrap/socat or sandbox-exec are available, else off with a warning), os (required: refuse to start without it), off",
    parse: (raw: unknown, f: string) => {
      const mode = raw === undefined ? "auto" : String(raw);
      return mode === "auto" || mode === "os" || mode === "off"
        ? mode
        : fail(`${f} takes auto, os or off (got "${mode}")`);
    },
  },
  "allow-network": { help: "Let sandboxed commands use the network (default: no network)", parse: flag },
  "allow-domain": {
    arg: "HOST",
    multiple: true,
    help: "Let sandboxed commands reach HOST (repeatable); others stay blocked",
    parse: list,
  },
  "allow-env": {
    arg: "NAME",
    multiple: true,
    help: "Pass the server's variable NAME to commands (repeatable); secrets (*_KEY, *TOKEN*, *SECRET*, *PASSWORD*) are withheld unless named",
    parse: list,
  },
  "max-commands": { arg: "N", help: "Commands that may run at once (default 4)", parse: wholeNumber(4) },
  // options
  "max-background": {
    arg: "N",
    help: "Background commands (Run with run_in_background) alive at once (default 8)",
    parse: wholeNumber(8),
  },
  "background-timeout": {
    arg: "SEC",
    help: "Lifetime of a background command, in seconds, after which it is stopped (default 14400: 4 hours)",
    parse: wholeNumber(14_400),
  },
  service: {
    arg: "NAME",
    multiple: true,
    help: "Start a service for the workspace on first use and give every command its variables: postgres (DATABASE_URL, PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) or redis (REDIS_URL); NAME:PORT fixes the port (repeatable)",
    parse: (raw: unknown, f: string) => {
      const requests = list(raw).map(parseServiceRequest);
      const problem = requests.find((r) => typeof r === "string");
      if (problem) return fail(`${f}: ${problem}`);
      const valid = requests as ServiceRequest[];
      return valid.filter((r, i) => valid.findIndex((o) => o.name === r.name) === i);
    },
  },
  "service-reset": { help: "Wipe the services' data (a fresh, empty database) before they start", parse: flag },
  "test-command": {
    arg: "CMD",
    help: "How Task verifies work (default: detected from the project's manifests)",
    parse: text,
  },
  "task-max-tokens": {
    arg: "N",
    help: "Token budget of one Task run (default 3000000)",
    parse: wholeNumber(3_000_000),
  },
  "task-timeout": {
    arg: "SEC",
    help: "Wall-time budget of one Task run, in seconds (default 1800)",
    parse: wholeNumber(1800),
  },
  "task-wait": {
    arg: "SEC",
    help: 'How long a Task call waits before it returns "running" and the run goes on in the background: seconds (default 45), 0 (return at once) or none (wait for the end)',
    parse: (raw: unknown, f: string): number | null => {
      if (raw === undefined) return 45;
      if (raw === "none") return null;
      const n = Number(raw);
      return Number.isInteger(n) && n >= 0
        ? n
        : fail(`${f} takes a whole number of seconds (0 or more) or none (got "${raw}")`);
    },
  },
  "max-tasks": { arg: "N", help: "Task runs at once (default 2; more wait for a slot)", parse: wholeNumber(2) },
  "max-budget-usd": {
    arg: "X",
    help: "Default cost limit of one Task run, in US dollars (default: none)",
    parse: (raw: unknown, f: string) => {
      if (raw === undefined) return undefined;
      const n = Number(raw);
      return n > 0 && Number.isFinite(n) ? n : fail(`${f} takes a positive number of US dollars (got "${raw}")`);
    },
  },
  thinking: {
    arg: "MODE",
    help: "Extended thinking of the Task model: on (default), off, or an effort: low, medium, high, xhigh, max",
    parse: (raw: unknown, f: string): ThinkingSetting => {
      const mode = raw === undefined ? "on" : String(raw);
      return (THINKING_SETTINGS as readonly string[]).includes(mode)
        ? (mode as ThinkingSetting)
        : fail(`${f} takes one of ${THINKING_SETTINGS.join(", ")} (got "${mode}")`);
    },
  },
  web: {
    arg: "on|off",
    help: "Server-side web search and fetch for Task on the Anthropic API (default on)",
    parse: (raw: unknown, f: string) =>
      raw === undefined || raw === "on" ? true : raw === "off" ? false : fail(`${f} takes on or off (got "${raw}")`),
  },
  "web-domain": {
    arg: "HOST",
    multiple: true,
    help: "Let the web tools reach only HOST (repeatable; default: any)",
    parse: list,
  },
  "web-max-uses": {
    arg: "N",
    help: "Web searches and fetches one Task run may make (default 20)",
    parse: wholeNumber(20),
  },
  help: { short: "h", help: "Show this help", parse: flag },
  version: { short: "v", help: "Show the version", parse: flag },
} satisfies Record<string, Spec<unknown>>;

type Options = typeof SERVER_OPTIONS;
export type ServerArgs = { [K in keyof Options]: ReturnType<Options[K]["parse"]> };

const specs = Object.entries(SERVER_OPTIONS) as [string, Spec<unknown>][];
/** The option a command-line token names (`--name` or `-s`), if any. */
const optionOf = (token: string) =>
  specs.find(([name, s]) => token === `--${name}` || (s.short !== undefined && token === `-${s.short}`));

/** Lets a value start with a dash (`--task-wait -5`), so that validation, not the parser, explains what is accepted. */
function joinDashedValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const option = optionOf(argv[i]!);
    const next = argv[i + 1];
    if (option?.[1].arg && next?.startsWith("-") && !optionOf(next)) {
      out.push(`--${option[0]}=${next}`);
      i++;
    } else out.push(argv[i]!);
  }
  return out;
}

/** Parses and validates the server's arguments; throws UsageError naming the option and what it accepts. */
export function parseServerArgs(argv: string[]): ServerArgs {
  const options = Object.fromEntries(
    specs.map(([name, s]) => [
      name,
      { type: s.arg ? "string" : "boolean", ...(s.short && { short: s.short }), ...(s.multiple && { multiple: true }) },
    ]),
  ) as NonNullable<ParseArgsConfig["options"]>;
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    ({ values } = parseArgs({ args: joinDashedValues(argv), options, strict: true, allowPositionals: false }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\nRun with --help for usage.`);
  }
  return Object.fromEntries(
    specs.map(([name, s]) => [name, s.parse(values[name] as never, `--${name}`)]),
  ) as ServerArgs;
}

/** Wraps text to width, indenting continuation lines. */
function wrap(words: string, width: number, indent: number): string {
  const lines: string[] = [];
  let line = "";
  for (const word of words.split(" ")) {
    if (line && line.length + word.length + 1 > width - indent) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  lines.push(line);
  return lines.join(`\n${" ".repeat(indent)}`);
}

/** `--help`: usage, every option from the table, then the prose. */
export function serverHelp(): string {
  const column = 24;
  const rows = specs.map(([name, s]) => {
    const label = `  ${s.short ? `-${s.short}, ` : ""}--${name}${s.arg ? ` ${s.arg}` : ""}`;
    return `${label.padEnd(column)}${label.length >= column ? `\n${" ".repeat(column)}` : ""}${wrap(s.help, 100, column)}`;
  });
  return [
    `${pkg.name} ${pkg.version}: an MCP server (stdio) exposing a backend-developer agent.`,
    "",
    `Usage: ${pkg.name} [--workspace DIR] [options]`,
    `       ${pkg.name} init --help      (write a client's configuration)`,
    "",
    "Options:",
    ...rows,
    "",
    wrap(
      "Task uses the Anthropic API when ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN is set (ANTHROPIC_BASE_URL, ANTHROPIC_CUSTOM_HEADERS and BACKEND_AGENT_MODEL are honoured), Amazon Bedrock with CLAUDE_CODE_USE_BEDROCK=1, Google Vertex AI with CLAUDE_CODE_USE_VERTEX=1, else the client's model through MCP sampling.",
      100,
      0,
    ),
    "",
    "Tools: Read, Write, Edit, Grep, Glob, Run, Task, TaskOutput, TaskStop. Logs go to stderr; stdout carries only the protocol.",
  ].join("\n");
}
