;; uppercase: returns its input with ASCII letters upper-cased (other bytes,
;; UTF-8 included, pass through unchanged). The input "!fail" fails the
;; attempt permanently, to show a failure that is not retried.
;;
;; No SDK: the module imports wasmtask_v1 directly (sdk/ABI.md) and owns its
;; memory. Layout: constants below 128, the log line at 128, the input (read
;; whole, upper-cased in place) from 1024, growing memory to fit it.
(module
  (import "wasmtask_v1" "input_len" (func $input_len (result i32)))
  (import "wasmtask_v1" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (import "wasmtask_v1" "fail" (func $fail (param i32 i32 i32)))
  (import "wasmtask_v1" "log" (func $log (param i32 i32 i32)))

  (memory (export "memory") 1)
  (data (i32.const 0) "the input asked to fail")  ;; 23 bytes
  (data (i32.const 32) " bytes")                  ;; 6 bytes
  (data (i32.const 128) "upper-casing ")          ;; 13 bytes, then the number
  (global $buf i32 (i32.const 1024))

  ;; utoa writes n in decimal at dst and returns the number of digits.
  (func $utoa (param $n i32) (param $dst i32) (result i32)
    (local $len i32) (local $t i32)
    (local.set $len (i32.const 1))
    (local.set $t (local.get $n))
    (block $done
      (loop $count
        (br_if $done (i32.lt_u (local.get $t) (i32.const 10)))
        (local.set $t (i32.div_u (local.get $t) (i32.const 10)))
        (local.set $len (i32.add (local.get $len) (i32.const 1)))
        (br $count)))
    (local.set $t (i32.add (local.get $dst) (local.get $len)))
    (loop $digit
      (local.set $t (i32.sub (local.get $t) (i32.const 1)))
      (i32.store8 (local.get $t) (i32.add (i32.rem_u (local.get $n) (i32.const 10)) (i32.const 48)))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (i32.gt_u (local.get $t) (local.get $dst))))
    (local.get $len))

  ;; copy copies n bytes from src to dst (no bulk-memory needed).
  (func $copy (param $src i32) (param $dst i32) (param $n i32)
    (block $done
      (loop $byte
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store8 (local.get $dst) (i32.load8_u (local.get $src)))
        (local.set $src (i32.add (local.get $src) (i32.const 1)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $byte))))

  ;; reserve grows memory so that [0, end) is addressable.
  (func $reserve (param $end i32)
    (local $pages i32)
    (local.set $pages (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then unreachable)))))

  (func (export "wasmtask_handle") (result i32)
    (local $n i32) (local $got i32) (local $i i32) (local $c i32) (local $p i32)
    ;; read the whole input into $buf
    (local.set $n (call $input_len))
    (call $reserve (i32.add (global.get $buf) (local.get $n)))
    (block $done
      (loop $read
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $got (call $input_read (local.get $i) (i32.add (global.get $buf) (local.get $i))
                                          (i32.sub (local.get $n) (local.get $i))))
        (br_if $done (i32.le_s (local.get $got) (i32.const 0)))
        (local.set $i (i32.add (local.get $i) (local.get $got)))
        (br $read)))
    (local.set $n (local.get $i))

    ;; log "upper-casing N bytes"
    (local.set $p (i32.add (i32.const 141) (call $utoa (local.get $n) (i32.const 141))))
    (call $copy (i32.const 32) (local.get $p) (i32.const 6))
    (call $log (i32.const 0) (i32.const 128) (i32.sub (i32.add (local.get $p) (i32.const 6)) (i32.const 128)))

    ;; "!fail": a permanent failure (fail kind 0, then return 1)
    (if (i32.and (i32.eq (local.get $n) (i32.const 5))
                 (i32.and (i32.eq (i32.load (global.get $buf)) (i32.const 0x69616621))   ;; "!fai"
                          (i32.eq (i32.load8_u offset=4 (global.get $buf)) (i32.const 0x6c)))) ;; "l"
      (then
        (call $fail (i32.const 0) (i32.const 0) (i32.const 23))
        (return (i32.const 1))))

    ;; upper-case ASCII letters in place: c - 'a' < 26 (unsigned)
    (local.set $i (i32.const 0))
    (block $done
      (loop $byte
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $p (i32.add (global.get $buf) (local.get $i)))
        (local.set $c (i32.load8_u (local.get $p)))
        (if (i32.lt_u (i32.sub (local.get $c) (i32.const 97)) (i32.const 26))
          (then (i32.store8 (local.get $p) (i32.sub (local.get $c) (i32.const 32)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $byte)))

    ;; output_write returns -3 past the output limit; the attempt then ends
    ;; as output_too_large whatever we return
    (if (i32.lt_s (call $output_write (global.get $buf) (local.get $n)) (i32.const 0))
      (then (return (i32.const 1))))
    (i32.const 0))
)
