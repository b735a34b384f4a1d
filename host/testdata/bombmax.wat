;; bombmax: like bomb16, but the module declares a maximum of 20 pages: the
;; grow past its own maximum is refused, and the trap after it is an oom.
;; Build: wat2wasm bombmax.wat -o bombmax.wasm (make wasm)
(module
  (memory (export "memory") 1 20)
  (func (export "wasmtask_handle") (result i32)
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable))
