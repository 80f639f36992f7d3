// Merges one server entry into a host's configuration file without losing anything in it: the entry is spliced into
// the text at the offsets jsonc-parser reports, so every other byte (comments where the host allows them, formatting,
// key order) stays as it was.
import { isDeepStrictEqual } from "node:util";
import { getNodeValue, type Node, type ParseError, parseTree, printParseErrorCode } from "jsonc-parser/lib/esm/main.js";

/** A failure of init that is the user's to fix; exitCode 2 for a usage error. */
export class InitError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export interface MergeResult {
  text: string;
  status: "created" | "added" | "replaced" | "unchanged";
}

/** Merges one server entry into a configuration file's text (undefined: no file yet). Throws InitError when the text does not parse. */
export function mergeConfig(
  existing: string | undefined,
  format: { key: string; jsonc: boolean },
  name: string,
  entry: unknown,
  file = "the file",
): MergeResult {
  const { key, jsonc } = format;
  if (existing === undefined || existing.trim() === "")
    return { text: `${JSON.stringify({ [key]: { [name]: entry } }, null, 2)}\n`, status: "created" };
  const bom = existing.startsWith("\uFEFF") ? "\uFEFF" : "";
  const text = existing.slice(bom.length);
  const errors: ParseError[] = [];
  const tree = parseTree(text, errors, { disallowComments: !jsonc, allowTrailingComma: jsonc });
  if (errors.length || !tree) {
    const e = errors[0];
    const before = text.slice(0, e?.offset ?? 0).split("\n");
    const why = e
      ? `${printParseErrorCode(e.error)} at line ${before.length}, column ${before.at(-1)!.length + 1}`
      : "empty";
    throw new InitError(
      `${file} is not valid ${jsonc ? "JSON with comments" : "JSON"} (${why}). Fix it, or choose another file with --config. The file was not changed.`,
    );
  }
  if (tree.type !== "object")
    throw new InitError(`${file} does not hold a JSON object at the top level. The file was not changed.`);
  const property = (obj: Node, name: string) => obj.children?.find((p) => p.children?.[0]?.value === name);
  const servers = property(tree, key)?.children?.[1];
  if (servers && servers.type !== "object")
    throw new InitError(`"${key}" in ${file} is not an object. The file was not changed.`);
  const current = servers && property(servers, name)?.children?.[1];
  // (jsonc-parser builds prototype-less objects; a JSON round trip makes them comparable.)
  if (current && isDeepStrictEqual(JSON.parse(JSON.stringify(getNodeValue(current))), entry))
    return { text: existing, status: "unchanged" };

  // Splice the new text in by hand, so that every other byte of the file stays as it was.
  const eol = text.includes("\r\n") ? "\r\n" : "\n";
  const unit = /^([ \t]+)\S/m.exec(text)?.[1] ?? "  ";
  const indentAt = (offset: number) => /^[ \t]*/.exec(text.slice(text.lastIndexOf("\n", offset - 1) + 1))![0];
  const json = (value: unknown, base: string) =>
    JSON.stringify(value, null, unit)
      .split("\n")
      .join(eol + base);
  const splice = (at: number, remove: number, insert: string) =>
    bom + text.slice(0, at) + insert + text.slice(at + remove);
  if (current)
    return {
      text: splice(current.offset, current.length, json(entry, indentAt(current.parent!.offset))),
      status: "replaced",
    };
  const [parent, addName, addValue] = servers ? [servers, name, entry] : [tree, key, { [name]: entry }];
  const last = parent.children?.at(-1);
  if (last) {
    const base = indentAt(last.offset);
    const added = `${JSON.stringify(addName)}: ${json(addValue, base)}`;
    const end = last.offset + last.length;
    let lineEnd = text.indexOf("\n", end);
    if (lineEnd === -1) lineEnd = text.length;
    if (text[lineEnd - 1] === "\r") lineEnd--;
    // When only a comma and/or a comment follow the last property on its line, the new one goes on the next line, so
    // that comment stays with its property (and a trailing comma, where the host allows them, stays the file's style).
    const rest = /^([ \t]*,)?[ \t]*(\/\/.*|\/\*.*\*\/[ \t]*)?$/.exec(text.slice(end, lineEnd));
    if (!rest) return { text: splice(end, 0, `,${eol}${base}${added}`), status: "added" };
    if (rest[1]) return { text: splice(lineEnd, 0, `${eol}${base}${added},`), status: "added" };
    return {
      text: `${bom + text.slice(0, end)},${text.slice(end, lineEnd)}${eol}${base}${added}${text.slice(lineEnd)}`,
      status: "added",
    };
  }
  // An empty object: write its one property inside the braces.
  const base = indentAt(parent.offset);
  return {
    text: splice(
      parent.offset,
      parent.length,
      `{${eol}${base}${unit}${JSON.stringify(addName)}: ${json(addValue, base + unit)}${eol}${base}}`,
    ),
    status: "added",
  };
}
