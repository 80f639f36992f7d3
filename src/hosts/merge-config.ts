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
  const tree = parseOrThrow(text, jsonc, file);
  const servers = property(tree, key)?.children?.[1];
  if (servers && servers.type !== "object")
    throw new InitError(`"${key}" in ${file} is not an object. The file was not changed.`);
  const current = servers && property(servers, name)?.children?.[1];
  // (jsonc-parser builds prototype-less objects; a JSON round trip makes them comparable.)
  if (current && isDeepStrictEqual(JSON.parse(JSON.stringify(getNodeValue(current))), entry))
    return { text: existing, status: "unchanged" };
  const edit = new Splicer(bom, text);
  if (current)
    return {
      text: edit.splice(current.offset, current.length, edit.json(entry, edit.indentAt(current.parent!.offset))),
      status: "replaced",
    };
  const [parent, addName, addValue] = servers ? [servers, name, entry] : [tree, key, { [name]: entry }];
  return { text: edit.addProperty(parent, addName, addValue), status: "added" };
}

const property = (obj: Node, name: string) => obj.children?.find((p) => p.children?.[0]?.value === name);

/** The file's syntax tree; an InitError naming the line and column when it does not parse. */
function parseOrThrow(text: string, jsonc: boolean, file: string): Node {
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
  return tree;
}

/** Splices new text into the file by hand, so that every other byte of it stays as it was. */
class Splicer {
  private readonly eol: string;
  private readonly unit: string;

  constructor(
    private readonly bom: string,
    private readonly text: string,
  ) {
    this.eol = text.includes("\r\n") ? "\r\n" : "\n";
    this.unit = /^([ \t]+)\S/m.exec(text)?.[1] ?? "  ";
  }

  indentAt(offset: number): string {
    return /^[ \t]*/.exec(this.text.slice(this.text.lastIndexOf("\n", offset - 1) + 1))![0];
  }

  json(value: unknown, base: string): string {
    return JSON.stringify(value, null, this.unit)
      .split("\n")
      .join(this.eol + base);
  }

  splice(at: number, remove: number, insert: string): string {
    return this.bom + this.text.slice(0, at) + insert + this.text.slice(at + remove);
  }

  /** The text with one more property in the object parent, in the file's own style. */
  addProperty(parent: Node, name: string, value: unknown): string {
    const { text, eol } = this;
    const last = parent.children?.at(-1);
    if (!last) {
      // An empty object: write its one property inside the braces.
      const base = this.indentAt(parent.offset);
      const inner = `${JSON.stringify(name)}: ${this.json(value, base + this.unit)}`;
      return this.splice(parent.offset, parent.length, `{${eol}${base}${this.unit}${inner}${eol}${base}}`);
    }
    const base = this.indentAt(last.offset);
    const added = `${JSON.stringify(name)}: ${this.json(value, base)}`;
    const end = last.offset + last.length;
    let lineEnd = text.indexOf("\n", end);
    if (lineEnd === -1) lineEnd = text.length;
    if (text[lineEnd - 1] === "\r") lineEnd--;
    // When only a comma and/or a comment follow the last property on its line, the new one goes on the next line, so
    // that comment stays with its property (and a trailing comma, where the host allows them, stays the file's style).
    const rest = /^([ \t]*,)?[ \t]*(\/\/.*|\/\*.*\*\/[ \t]*)?$/.exec(text.slice(end, lineEnd));
    if (!rest) return this.splice(end, 0, `,${eol}${base}${added}`);
    if (rest[1]) return this.splice(lineEnd, 0, `${eol}${base}${added},`);
    return `${this.bom + text.slice(0, end)},${text.slice(end, lineEnd)}${eol}${base}${added}${text.slice(lineEnd)}`;
  }
}
