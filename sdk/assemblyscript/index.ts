// The package entry AssemblyScript resolves for `import ... from "@wasmtask/assemblyscript"`
// (asc looks for <package>/index.ts); the SDK is assembly/index.ts.
export * from "./assembly/index";
