;; scratchfill: a handler that appends its input to the file "f" of its
;; first preopened directory (the scratch directory, /tmp, when it is the
;; only grant) and returns 0 with output "ok", or 1 with output "refused"
;; when the write fails (a full scratch: EIO).
;; Build: wat2wasm scratchfill.wat -o scratchfill.wasm (make wasm)
(module
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasmtask_v1" "input_len" (func $input_len (result i32)))
  (import "wasmtask_v1" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "f")
  (data (i32.const 32) "ok")
  (data (i32.const 48) "refused")
  (func (export "wasmtask_handle") (result i32)
    (local $len i32) (local $fd i32) (local $errno i32)
    (local.set $len (call $input_len))
    (drop (call $input_read (i32.const 0) (i32.const 1024) (local.get $len)))
    ;; path_open(dirfd 3, no symlink follow, "f", O_CREAT, all rights, APPEND) -> fd at 8
    (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 1)
          (i64.const -1) (i64.const -1) (i32.const 1) (i32.const 8))
      (then (return (i32.const 2))))
    (local.set $fd (i32.load (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (local.get $len))
    (local.set $errno (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 12)))
    (drop (call $fd_close (local.get $fd)))
    (if (local.get $errno)
      (then
        (drop (call $output_write (i32.const 48) (i32.const 7)))
        (return (i32.const 1))))
    (drop (call $output_write (i32.const 32) (i32.const 2)))
    (i32.const 0)))
