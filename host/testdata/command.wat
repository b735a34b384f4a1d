;; command: a WASI command (_start, no wasmtask_handle). Copies stdin to
;; stdout, writes "command: stderr line" to stderr, and exits with
;; proc_exit(3) when the input starts with '!'.
;; Build: wat2wasm command.wat -o command.wasm (make wasm)
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "command: stderr line\n")  ;; 21 bytes
  (func (export "_start")
    (local $n i32) (local $total i32)
    ;; read stdin to EOF into [1024, 5120)
    (block $eof
      (loop $read
        (i32.store (i32.const 0) (i32.add (i32.const 1024) (local.get $total)))
        (i32.store (i32.const 4) (i32.sub (i32.const 4096) (local.get $total)))
        (br_if $eof (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $total (i32.add (local.get $total) (local.get $n)))
        (br $read)))
    (i32.store (i32.const 16) (i32.const 1024))
    (i32.store (i32.const 20) (local.get $total))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
    (i32.store (i32.const 16) (i32.const 64))
    (i32.store (i32.const 20) (i32.const 21))
    (drop (call $fd_write (i32.const 2) (i32.const 16) (i32.const 1) (i32.const 24)))
    (if (i32.eq (i32.load8_u (i32.const 1024)) (i32.const 33)) ;; '!'
      (then (call $proc_exit (i32.const 3))))))
