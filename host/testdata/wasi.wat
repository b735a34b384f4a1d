;; wasi: a handler that prints to WASI stdout and stderr (both must land in
;; the attempt's log) and writes "out" as its output.
;; Build: wat2wasm wasi.wat -o wasi.wasm (make wasm)
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "hello from stdout\n")   ;; 18 bytes
  (data (i32.const 96) "hello from stderr\n")   ;; 18 bytes
  (data (i32.const 128) "out")
  (func $print (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "wasmtask_handle") (result i32)
    (call $print (i32.const 1) (i32.const 64) (i32.const 18))
    (call $print (i32.const 2) (i32.const 96) (i32.const 18))
    (drop (call $output_write (i32.const 128) (i32.const 3)))
    (i32.const 0)))
