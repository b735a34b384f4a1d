;; nohandle: exports a memory and a function, but neither wasmtask_handle
;; nor _start; Load must reject it.
;; Build: wat2wasm nohandle.wat -o nohandle.wasm (make wasm)
(module
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
    (i32.const 0)))
