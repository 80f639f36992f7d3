import { constants } from "node:fs";
import fs from "node:fs/promises";

/**
 * A workspace file's text when it is a regular file (links followed), else undefined. Opened without blocking, so a
 * FIFO (which a sandboxed command can make) never parks one of libuv's four pool threads waiting for a writer, and a
 * link to a device is never read. Files the server reads for itself from the workspace go through here.
 */
export async function readRegularText(file: string, maxBytes = 16 * 1024 * 1024): Promise<string | undefined> {
  const handle = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK).catch(() => undefined);
  if (!handle) return undefined;
  try {
    const st = await handle.stat();
    if (!st.isFile() || st.size > maxBytes) return undefined;
    return await handle.readFile("utf8");
  } finally {
    await handle.close();
  }
}
