// How the file tools see a file's bytes as text: encodings and byte-order marks, line endings, binary detection, lines.

export interface TextFile {
  text: string;
  encoding: "utf8" | "utf16le";
  bom: boolean;
}

export function decodeText(buf: Buffer): TextFile {
  if (buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf)
    return { text: buf.subarray(3).toString("utf8"), encoding: "utf8", bom: true };
  if (buf[0] === 0xff && buf[1] === 0xfe)
    return { text: buf.subarray(2).toString("utf16le"), encoding: "utf16le", bom: true };
  return { text: buf.toString("utf8"), encoding: "utf8", bom: false };
}

export function encodeText(file: TextFile): Buffer {
  const body = Buffer.from(file.text, file.encoding);
  if (!file.bom) return body;
  return Buffer.concat([file.encoding === "utf8" ? Buffer.from([0xef, 0xbb, 0xbf]) : Buffer.from([0xff, 0xfe]), body]);
}

/** True when the bytes look binary: a NUL byte early on, unless it is UTF-16 with a BOM. */
export function looksBinary(buf: Buffer): boolean {
  if (buf[0] === 0xff && buf[1] === 0xfe) return false;
  return buf.subarray(0, 8192).includes(0);
}

export function usesCRLF(text: string): boolean {
  const crlf = text.split("\r\n").length - 1;
  return crlf > 0 && crlf >= (text.split("\n").length - 1) / 2;
}

/** Converts lone LF to CRLF when the file uses CRLF and the model sent LF. */
export function matchLineEndings(text: string, crlf: boolean): string {
  return crlf ? text.replace(/\r?\n/g, "\r\n") : text;
}

/** A line as Read shows it: its number, a tab, the text (like cat -n). */
export const numberLine = (n: number, line: string) => `${String(n).padStart(6)}\t${line}`;

/** Lines of a text, without the empty one after a final newline. */
export function splitLines(text: string): string[] {
  const lines = text.split(/\r?\n/);
  if (lines.length > 1 && lines.at(-1) === "") lines.pop();
  return lines;
}
