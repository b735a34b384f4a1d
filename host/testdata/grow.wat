;; grow: a memory bomb; grows linear memory a page at a time until
;; memory.grow fails, then traps (what a guest allocator does when out of
;; memory).
;; Build: wat2wasm grow.wat -o grow.wasm (make wasm)
(module
  (memory (export "memory") 1)
  (func (export "wasmtask_handle") (result i32)
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))
