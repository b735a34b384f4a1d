;; tablemem: a handler with a table and a memory with a declared maximum,
;; so that the host rewrites both sections (sections.go, boundedModule);
;; it outputs memory.grow(input_len()) as an i32 LE.
;; Build: wat2wasm tablemem.wat -o tablemem.wasm (make wasm)
(module
  (import "wasmtask_v1" "input_len" (func $input_len (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (table 10 funcref)
  (memory (export "memory") 1 4)
  (func (export "wasmtask_handle") (result i32)
    (i32.store (i32.const 0) (memory.grow (call $input_len)))
    (drop (call $output_write (i32.const 0) (i32.const 4)))
    (i32.const 0)))
