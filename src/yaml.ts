// The YAML parser, imported dynamically through this module so that it loads on first use: a bundled dynamic import
// of the package itself (CommonJS) would only have a default export.
export { parse } from "yaml";
