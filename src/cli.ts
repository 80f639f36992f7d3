#!/usr/bin/env node
// The command's entry: turns on Node's compile cache where there is one, then loads the server (src/main.ts).
import { enableCompileCache } from "./compile-cache.js";

enableCompileCache();
await import("./main.js");
