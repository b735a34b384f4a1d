;; retry: fails retryably until the attempt named by the plugin config
;; "succeed_on" (default 3), then outputs "succeeded on attempt N".
;;
;; No SDK: it reads task_info's JSON with a plain search for the key
;; "attempt": (the host writes the top-level fields before "labels", and a
;; quote inside a JSON string is escaped, so the first match is the field).
;; Layout: constants below 256, the config value at 256, messages are built
;; from 512 (cursor $pos), task_info's JSON from 1024.
(module
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (import "wasmtask_v1" "fail" (func $fail (param i32 i32 i32)))
  (import "wasmtask_v1" "log" (func $log (param i32 i32 i32)))
  (import "wasmtask_v1" "task_info" (func $task_info (param i32 i32) (result i32)))
  (import "wasmtask_v1" "config_get" (func $config_get (param i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 0) "succeed_on")                        ;; 10
  (data (i32.const 16) "\"attempt\":")                     ;; 10
  (data (i32.const 32) "\"max_attempts\":")                ;; 15
  (data (i32.const 64) "attempt ")                         ;; 8
  (data (i32.const 80) " of ")                             ;; 4
  (data (i32.const 96) ": failing on purpose")             ;; 20
  (data (i32.const 128) "transient failure on attempt ")   ;; 29
  (data (i32.const 160) " (succeeds on attempt ")          ;; 22
  (data (i32.const 192) ")")                               ;; 1
  (data (i32.const 208) "succeeded on attempt ")           ;; 21
  (global $msg i32 (i32.const 512))
  (global $pos (mut i32) (i32.const 512))
  (global $info i32 (i32.const 1024))

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

  ;; atoi reads the decimal digits at p (stopping at end or a non-digit);
  ;; -1 when there are none.
  (func $atoi (param $p i32) (param $end i32) (result i32)
    (local $v i32) (local $c i32) (local $any i32)
    (block $done
      (loop $digit
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $c (i32.sub (i32.load8_u (local.get $p)) (i32.const 48)))
        (br_if $done (i32.ge_u (local.get $c) (i32.const 10)))
        (local.set $v (i32.add (i32.mul (local.get $v) (i32.const 10)) (local.get $c)))
        (local.set $any (i32.const 1))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $digit)))
    (if (result i32) (local.get $any) (then (local.get $v)) (else (i32.const -1))))

  ;; digits reports whether [p, end) is one or more decimal digits only.
  (func $digits (param $p i32) (param $end i32) (result i32)
    (if (i32.ge_u (local.get $p) (local.get $end)) (then (return (i32.const 0))))
    (block $done
      (loop $digit
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (if (i32.ge_u (i32.sub (i32.load8_u (local.get $p)) (i32.const 48)) (i32.const 10))
          (then (return (i32.const 0))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $digit)))
    (i32.const 1))

  ;; find returns the address just after the first needle in [hay, end), or -1.
  (func $find (param $hay i32) (param $end i32) (param $needle i32) (param $n i32) (result i32)
    (local $i i32)
    (block $none
      (loop $at
        (br_if $none (i32.gt_u (i32.add (local.get $hay) (local.get $n)) (local.get $end)))
        (local.set $i (i32.const 0))
        (block $mismatch
          (loop $cmp
            (if (i32.eq (local.get $i) (local.get $n))
              (then (return (i32.add (local.get $hay) (local.get $n)))))
            (br_if $mismatch (i32.ne (i32.load8_u (i32.add (local.get $hay) (local.get $i)))
                                     (i32.load8_u (i32.add (local.get $needle) (local.get $i)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $cmp)))
        (local.set $hay (i32.add (local.get $hay) (i32.const 1)))
        (br $at)))
    (i32.const -1))

  ;; emit appends n bytes from src to the message at $pos.
  (func $emit (param $src i32) (param $n i32)
    (block $done
      (loop $byte
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store8 (global.get $pos) (i32.load8_u (local.get $src)))
        (global.set $pos (i32.add (global.get $pos) (i32.const 1)))
        (local.set $src (i32.add (local.get $src) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $byte))))

  (func $emit_num (param $v i32)
    (global.set $pos (i32.add (global.get $pos) (call $utoa (local.get $v) (global.get $pos)))))

  ;; field returns the integer after key (at k, length kn) in task_info, or 0.
  (func $field (param $end i32) (param $k i32) (param $kn i32) (result i32)
    (local $p i32)
    (local.set $p (call $find (global.get $info) (local.get $end) (local.get $k) (local.get $kn)))
    (if (i32.lt_s (local.get $p) (i32.const 0)) (then (return (i32.const 0))))
    (local.set $p (call $atoi (local.get $p) (local.get $end)))
    (select (local.get $p) (i32.const 0) (i32.ge_s (local.get $p) (i32.const 0))))

  (func (export "wasmtask_handle") (result i32)
    (local $succeed i32) (local $n i32) (local $end i32) (local $attempt i32) (local $max i32)
    ;; succeed_on from the config, when it is a number of at most 9 digits
    (local.set $succeed (i32.const 3))
    (local.set $n (call $config_get (i32.const 0) (i32.const 10) (i32.const 256) (i32.const 16)))
    (if (i32.and (i32.gt_s (local.get $n) (i32.const 0)) (i32.le_s (local.get $n) (i32.const 9)))
      (then
        (if (call $digits (i32.const 256) (i32.add (i32.const 256) (local.get $n)))
          (then (local.set $succeed (call $atoi (i32.const 256) (i32.add (i32.const 256) (local.get $n))))))))

    ;; task_info: probe its size, make room, read it (it always fits then)
    (local.set $n (call $task_info (i32.const 0) (i32.const 0)))
    (local.set $end (i32.add (global.get $info) (local.get $n)))
    (if (i32.gt_u (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16)) (memory.size))
      (then (drop (memory.grow (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
                                        (memory.size))))))
    (drop (call $task_info (global.get $info) (local.get $n)))
    (local.set $attempt (call $field (local.get $end) (i32.const 16) (i32.const 10)))
    (local.set $max (call $field (local.get $end) (i32.const 32) (i32.const 15)))

    (if (i32.lt_s (local.get $attempt) (local.get $succeed))
      (then
        ;; log "attempt A of M: failing on purpose"
        (global.set $pos (global.get $msg))
        (call $emit (i32.const 64) (i32.const 8))
        (call $emit_num (local.get $attempt))
        (call $emit (i32.const 80) (i32.const 4))
        (call $emit_num (local.get $max))
        (call $emit (i32.const 96) (i32.const 20))
        (call $log (i32.const 0) (global.get $msg) (i32.sub (global.get $pos) (global.get $msg)))
        ;; fail(1, "transient failure on attempt A (succeeds on attempt S)")
        (global.set $pos (global.get $msg))
        (call $emit (i32.const 128) (i32.const 29))
        (call $emit_num (local.get $attempt))
        (call $emit (i32.const 160) (i32.const 22))
        (call $emit_num (local.get $succeed))
        (call $emit (i32.const 192) (i32.const 1))
        (call $fail (i32.const 1) (global.get $msg) (i32.sub (global.get $pos) (global.get $msg)))
        (return (i32.const 1))))

    (global.set $pos (global.get $msg))
    (call $emit (i32.const 208) (i32.const 21))
    (call $emit_num (local.get $attempt))
    (if (i32.lt_s (call $output_write (global.get $msg) (i32.sub (global.get $pos) (global.get $msg))) (i32.const 0))
      (then (return (i32.const 1))))
    (i32.const 0))
)
