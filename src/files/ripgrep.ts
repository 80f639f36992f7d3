let found: Promise<string> | undefined;

/**
 * The ripgrep binary's path, looked up on first use: @vscode/ripgrep resolves its platform package when loaded,
 * which start-up does not need.
 */
export function ripgrepPath(): Promise<string> {
  found ??= import("@vscode/ripgrep").then((m) => m.rgPath);
  return found;
}
