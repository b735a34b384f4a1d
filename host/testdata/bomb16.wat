;; bomb16: grows its memory 16 pages at a time until memory.grow fails, then
;; traps. Under a 64-page cap it stops at 49 pages: below the cap, so only
;; the refused grow says it ran out of memory (issue 16).
;; Build: wat2wasm bomb16.wat -o bomb16.wasm (make wasm)
(module
  (memory (export "memory") 1)
  (func (export "wasmtask_handle") (result i32)
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable))
