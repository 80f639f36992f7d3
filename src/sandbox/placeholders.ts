// While any sandboxed command runs, the sandbox runtime keeps empty read-only files in the workspace as mount points
// for the paths it protects (.bashrc, .gitconfig, .mcp.json, .vscode, .claude/agents, …); a background server keeps
// them for hours. They are the sandbox's, never the workspace's: checkpoints and change lists leave them out.
import fs from "node:fs/promises";
import path from "node:path";

/** The runtime's protected names (its DANGEROUS_FILES and directories), as of @anthropic-ai/sandbox-runtime 0.0.78. */
const KNOWN = [
  ".gitconfig",
  ".gitmodules",
  ".bashrc",
  ".bash_profile",
  ".zshrc",
  ".zprofile",
  ".profile",
  ".ripgreprc",
  ".mcp.json",
  ".vscode",
  ".idea",
  ".claude/commands",
  ".claude/agents",
];

let names: Promise<string[]> | undefined;

/** The names, from the installed runtime when it can tell (so an upgrade that protects more is followed), else the known list. */
function protectedNames(): Promise<string[]> {
  names ??= import("@anthropic-ai/sandbox-runtime/dist/sandbox/sandbox-utils.js" as string)
    .then((m: { DANGEROUS_FILES?: string[]; getDangerousDirectories?: () => string[] }) => [
      ...new Set([...KNOWN, ...(m.DANGEROUS_FILES ?? []), ...(m.getDangerousDirectories?.() ?? [])]),
    ])
    .catch(() => KNOWN);
  return names;
}

/** Workspace-relative paths that are the runtime's placeholders right now: empty files of mode 0444 at a protected name. */
export async function sandboxPlaceholders(root: string): Promise<string[]> {
  const found = await Promise.all(
    (await protectedNames()).map(async (name) => {
      const st = await fs.lstat(path.join(root, name)).catch(() => undefined);
      return st?.isFile() && st.size === 0 && (st.mode & 0o777) === 0o444 ? name : undefined;
    }),
  );
  return found.filter((n): n is string => n !== undefined);
}
