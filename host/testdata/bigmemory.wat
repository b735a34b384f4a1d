;; bigmemory: declares a minimum memory of 300 pages (18.75 MiB), above the
;; limit of 256 pages the tests set (the default is 1024).
;; Build: wat2wasm bigmemory.wat -o bigmemory.wasm (make wasm)
(module
  (memory (export "memory") 300)
  (func (export "wasmtask_handle") (result i32)
    (i32.const 0)))
