// The AssemblyScript SDK for wasmtask handlers: guest ABI wasmtask_v1
// (sdk/ABI.md), AssemblyScript 0.28, no other dependency.
//
//   import { Task, Failure, run } from "@wasmtask/assemblyscript";
//
//   export function wasmtask_handle(): i32 { return run(upper); }
//
//   function upper(t: Task): Failure | null {
//     const out = t.input().slice();
//     for (let i = 0; i < out.length; i++) if (out[i] >= 97 && out[i] <= 122) out[i] -= 32;
//     return t.output(out);
//   }
//
// A handler returns null for success, or a Failure: retryable unless made
// with Failure.permanent. Build with --runtime stub --use abort= (see the
// README): every instance runs one attempt and is discarded, so memory is
// never collected.

// ---- The imports, one to one. ----

// @ts-ignore: decorator
@external("wasmtask_v1", "input_len")
export declare function input_len(): i32;
// @ts-ignore: decorator
@external("wasmtask_v1", "input_read")
export declare function input_read(offset: u32, buf: usize, limit: u32): i32;
// @ts-ignore: decorator
@external("wasmtask_v1", "output_write")
export declare function output_write(ptr: usize, len: u32): i32;
// @ts-ignore: decorator
@external("wasmtask_v1", "fail")
export declare function fail(kind: i32, ptr: usize, len: u32): void;
// @ts-ignore: decorator
@external("wasmtask_v1", "log")
export declare function log(level: i32, ptr: usize, len: u32): void;
// @ts-ignore: decorator
@external("wasmtask_v1", "task_info")
export declare function task_info(buf: usize, limit: u32): i32;
// @ts-ignore: decorator
@external("wasmtask_v1", "config_get")
export declare function config_get(key: usize, key_len: u32, buf: usize, limit: u32): i32;
// @ts-ignore: decorator
@external("wasmtask_v1", "submit")
export declare function submit(spec: usize, spec_len: u32, id_buf: usize, id_limit: u32): i32;
// @ts-ignore: decorator
@external("wasmtask_v1", "heartbeat")
export declare function heartbeat(ptr: usize, len: u32): i32;
// @ts-ignore: decorator
@external("wasmtask_v1", "cancelled")
export declare function cancelled(): i32;

// ---- Constants. ----

/** The negative results of the ABI. */
export const E_INVALID: i32 = -1;
export const E_NOT_FOUND: i32 = -2;
export const E_TOO_LARGE: i32 = -3;
export const E_CANCELLED: i32 = -4;
export const E_UNSUPPORTED: i32 = -5;
export const E_QUOTA: i32 = -6;

/** Level of a log line. */
export enum Level {
  Debug = -1,
  Info = 0,
  Warn = 1,
  Error = 2,
}

// ---- Failures and the handler. ----

/** A failed attempt: retryable unless made with Failure.permanent. */
export class Failure {
  constructor(public message: string, public permanent: bool = false, public code: i32 = 0) {}

  /** A failure that is retried under the task's max_attempts. */
  static retryable(message: string): Failure {
    return new Failure(message, false);
  }

  /** A failure that must not be retried (fail kind 0). */
  static permanent(message: string): Failure {
    return new Failure(message, true);
  }

  static abi(code: i32): Failure {
    let what = "unknown error";
    if (code == E_INVALID) what = "invalid argument";
    else if (code == E_NOT_FOUND) what = "not found";
    else if (code == E_TOO_LARGE) what = "too large";
    else if (code == E_CANCELLED) what = "cancelled";
    else if (code == E_UNSUPPORTED) what = "unsupported by this host";
    else if (code == E_QUOTA) what = "quota exceeded";
    return new Failure("wasmtask: " + what + " (" + code.toString() + ")", false, code);
  }
}

/** What a handler is: null for success, or a Failure. */
export type Handler = (t: Task) => Failure | null;

/**
 * run calls handler for this attempt and returns what wasmtask_handle must
 * (0 success, 1 failure). Export it from your entry file:
 *
 *   export function wasmtask_handle(): i32 { return run(myHandler); }
 */
export function run(handler: Handler): i32 {
  const f = handler(new Task());
  if (f === null) return 0;
  const msg = String.UTF8.encode(f.message);
  fail(f.permanent ? 0 : 1, changetype<usize>(msg), <u32>msg.byteLength);
  return 1;
}

// ---- Task. ----

/** What task_info returns. */
export class Info {
  task_id: string = "";
  run_id: string = "";
  /** 1-based. */
  attempt: i64 = 0;
  max_attempts: i64 = 0;
  handler: string = "";
  /** "sha256:<hex>" of the module. */
  module: string = "";
  /** Unix milliseconds. */
  deadline_ms: i64 = 0;
  /** "" for a root task. */
  parent_id: string = "";
  labels: Map<string, string> = new Map<string, string>();
}

/**
 * A child task (the task spec of docs/task-spec.md); empty fields are left out.
 * Without id, the host derives one from this run and the submission's
 * ordinal, so a retried handler creates no duplicates.
 */
export class ChildSpec {
  id: string = "";
  /** Required: a plugin name, optionally pinned as name@sha256:<hex>. */
  handler: string = "";
  /** UTF-8 text handed to the child. */
  input: string = "";
  /** Or raw bytes, base64. */
  input_b64: string = "";
  max_attempts: i32 = 0;
  /** A Go duration such as "30s". */
  timeout: string = "";
  priority: i32 = 0;
  /** Ids of tasks (earlier siblings included) this child waits for. */
  after: string[] = [];
  labels: Map<string, string> = new Map<string, string>();

  constructor(handler: string = "", input: string = "") {
    this.handler = handler;
    this.input = input;
  }

  /** The spec as JSON, as submit takes it. */
  toJSON(): string {
    let s = '{"handler":' + quote(this.handler);
    if (this.id.length) s += ',"id":' + quote(this.id);
    if (this.input.length) s += ',"input":' + quote(this.input);
    if (this.input_b64.length) s += ',"input_b64":' + quote(this.input_b64);
    if (this.max_attempts) s += ',"max_attempts":' + this.max_attempts.toString();
    if (this.timeout.length) s += ',"timeout":' + quote(this.timeout);
    if (this.priority) s += ',"priority":' + this.priority.toString();
    if (this.after.length) {
      s += ',"after":[';
      for (let i = 0; i < this.after.length; i++) s += (i ? "," : "") + quote(this.after[i]);
      s += "]";
    }
    if (this.labels.size) {
      s += ',"labels":{';
      const keys = this.labels.keys();
      for (let i = 0; i < keys.length; i++) {
        s += (i ? "," : "") + quote(keys[i]) + ":" + quote(this.labels.get(keys[i]));
      }
      s += "}";
    }
    return s + "}";
  }
}

/** The attempt being run. */
export class Task {
  private _input: Uint8Array | null = null;
  private _info: Info | null = null;

  /** The task input (read once, in chunks). */
  input(): Uint8Array {
    let buf = this._input;
    if (buf === null) {
      const n = max(input_len(), 0);
      buf = new Uint8Array(n);
      let off = 0;
      while (off < n) {
        const got = input_read(<u32>off, buf.dataStart + <usize>off, <u32>(n - off));
        if (got <= 0) break;
        off += got;
      }
      if (off < n) buf = buf.subarray(0, off);
      this._input = buf;
    }
    return buf;
  }

  /** The input decoded as UTF-8 text. */
  inputString(): string {
    const b = this.input();
    return String.UTF8.decodeUnsafe(b.dataStart, <usize>b.length);
  }

  /**
   * Appends b to the attempt's output: null, or a Failure with code
   * E_TOO_LARGE past the plugin's output limit (the attempt then ends as
   * output_too_large).
   */
  output(b: Uint8Array): Failure | null {
    const r = output_write(b.dataStart, <u32>b.length);
    return r < 0 ? Failure.abi(r) : null;
  }

  /** Appends s (as UTF-8) to the output. */
  outputString(s: string): Failure | null {
    const b = String.UTF8.encode(s);
    const r = output_write(changetype<usize>(b), <u32>b.byteLength);
    return r < 0 ? Failure.abi(r) : null;
  }

  /** Writes one log line (dropped past the plugin's log quota). */
  log(level: Level, msg: string): void {
    const b = String.UTF8.encode(msg);
    log(<i32>level, changetype<usize>(b), <u32>b.byteLength);
  }

  /** The attempt's description (ids, attempt number, deadline...), read once. */
  info(): Info {
    let info = this._info;
    if (info === null) {
      info = new Info();
      const n = task_info(0, 0); // size probe
      if (n > 0) {
        const buf = new Uint8Array(n);
        if (task_info(buf.dataStart, <u32>n) == n) parseInfo(buf, info);
      }
      this._info = info;
    }
    return info;
  }

  /** A value of the plugin's manifest config, or null when absent. */
  config(key: string): string | null {
    const k = String.UTF8.encode(key);
    const n = config_get(changetype<usize>(k), <u32>k.byteLength, 0, 0);
    if (n < 0) return null;
    const buf = new Uint8Array(n);
    if (config_get(changetype<usize>(k), <u32>k.byteLength, buf.dataStart, <u32>n) != n) return null;
    return String.UTF8.decodeUnsafe(buf.dataStart, <usize>n);
  }

  /**
   * Stages a child task, committed when this attempt succeeds. Its id is in
   * lastChildId after a null result.
   */
  submit(spec: ChildSpec): Failure | null {
    return this.submitJSON(spec.toJSON());
  }

  /** The id of the child staged by the last successful submit. */
  lastChildId: string = "";

  /** Stages a child task given as a JSON task spec; see submit. */
  submitJSON(spec: string): Failure | null {
    const s = String.UTF8.encode(spec);
    const id = new Uint8Array(256);
    const n = submit(changetype<usize>(s), <u32>s.byteLength, id.dataStart, 256);
    if (n < 0) return Failure.abi(n);
    this.lastChildId = String.UTF8.decodeUnsafe(id.dataStart, <usize>n);
    return null;
  }

  /** Reports progress and extends the lease; true when the attempt should stop. */
  heartbeat(detail: string = ""): bool {
    const b = String.UTF8.encode(detail);
    return heartbeat(changetype<usize>(b), <u32>b.byteLength) == 1;
  }

  /** True when the attempt should stop (canceled, or close to its deadline). */
  cancelled(): bool {
    return cancelled() == 1;
  }
}

// ---- A minimal JSON reader (task_info) and writer (child specs). ----

/** quote returns s as a JSON string. */
export function quote(s: string): string {
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c != 0x22 && c != 0x5c) continue;
    out += s.substring(start, i);
    start = i + 1;
    if (c == 0x22) out += '\\"';
    else if (c == 0x5c) out += "\\\\";
    else if (c == 0x0a) out += "\\n";
    else if (c == 0x0d) out += "\\r";
    else if (c == 0x09) out += "\\t";
    else out += "\\u00" + (c < 0x10 ? "0" : "") + c.toString(16);
  }
  return out + s.substring(start) + '"';
}

class Reader {
  constructor(public b: Uint8Array, public i: i32 = 0) {}

  peek(): i32 {
    while (this.i < this.b.length) {
      const c = this.b[this.i];
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) return c;
      this.i++;
    }
    return -1;
  }

  hex4(): u32 {
    let v: u32 = 0;
    for (let k = 0; k < 4 && this.i < this.b.length; k++) {
      const c = <u32>this.b[this.i++];
      v = (v << 4) | (c >= 97 ? c - 87 : c >= 65 ? c - 55 : c - 48);
    }
    return v;
  }

  /** Decodes the string at the opening quote. */
  str(): string {
    this.i++;
    const out = new Uint8Array(this.b.length - this.i);
    let n = 0;
    while (this.i < this.b.length) {
      const c = this.b[this.i++];
      if (c == 0x22) break;
      if (c != 0x5c) {
        out[n++] = c;
        continue;
      }
      const e = this.b[this.i++];
      if (e == 0x6e) out[n++] = 0x0a;
      else if (e == 0x72) out[n++] = 0x0d;
      else if (e == 0x74) out[n++] = 0x09;
      else if (e == 0x62) out[n++] = 0x08;
      else if (e == 0x66) out[n++] = 0x0c;
      else if (e == 0x75) {
        let cp = this.hex4();
        if (cp >= 0xd800 && cp < 0xdc00 && this.i + 1 < this.b.length && this.b[this.i] == 0x5c && this.b[this.i + 1] == 0x75) {
          this.i += 2;
          cp = 0x10000 + ((cp - 0xd800) << 10) + ((this.hex4() - 0xdc00) & 0x3ff);
        }
        if (cp < 0x80) out[n++] = <u8>cp;
        else if (cp < 0x800) {
          out[n++] = <u8>(0xc0 | (cp >> 6));
          out[n++] = <u8>(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
          out[n++] = <u8>(0xe0 | (cp >> 12));
          out[n++] = <u8>(0x80 | ((cp >> 6) & 0x3f));
          out[n++] = <u8>(0x80 | (cp & 0x3f));
        } else {
          out[n++] = <u8>(0xf0 | (cp >> 18));
          out[n++] = <u8>(0x80 | ((cp >> 12) & 0x3f));
          out[n++] = <u8>(0x80 | ((cp >> 6) & 0x3f));
          out[n++] = <u8>(0x80 | (cp & 0x3f));
        }
      } else out[n++] = e;
    }
    return String.UTF8.decodeUnsafe(out.dataStart, <usize>n);
  }

  /** Reads an integer, or skips any other scalar (returning 0). */
  int(): i64 {
    let neg = false;
    if (this.peek() == 0x2d) {
      neg = true;
      this.i++;
    }
    let v: i64 = 0;
    while (this.i < this.b.length) {
      const c = this.b[this.i];
      if (c < 0x30 || c > 0x39) break;
      v = v * 10 + <i64>(c - 0x30);
      this.i++;
    }
    this.skip();
    return neg ? -v : v;
  }

  /** Skips the value at i. */
  skip(): void {
    const c = this.peek();
    if (c == 0x22) {
      this.str();
      return;
    }
    if (c == 0x7b || c == 0x5b) {
      let depth = 0;
      while (this.i < this.b.length) {
        const d = this.b[this.i];
        if (d == 0x22) {
          this.str();
          continue;
        }
        this.i++;
        if (d == 0x7b || d == 0x5b) depth++;
        else if ((d == 0x7d || d == 0x5d) && --depth == 0) return;
      }
      return;
    }
    while (this.i < this.b.length) {
      const d = this.b[this.i];
      if (d == 0x2c || d == 0x7d || d == 0x5d || d == 0x20 || d == 0x09 || d == 0x0a || d == 0x0d) return;
      this.i++;
    }
  }
}

/** parseInfo fills info from task_info's JSON object. */
function parseInfo(b: Uint8Array, info: Info): void {
  const r = new Reader(b);
  if (r.peek() != 0x7b) return;
  r.i++;
  while (r.peek() == 0x22) {
    const key = r.str();
    if (r.peek() != 0x3a) return;
    r.i++;
    const c = r.peek();
    if (key == "attempt") info.attempt = r.int();
    else if (key == "max_attempts") info.max_attempts = r.int();
    else if (key == "deadline_ms") info.deadline_ms = r.int();
    else if (c == 0x22) {
      const v = r.str();
      if (key == "task_id") info.task_id = v;
      else if (key == "run_id") info.run_id = v;
      else if (key == "handler") info.handler = v;
      else if (key == "module") info.module = v;
      else if (key == "parent_id") info.parent_id = v;
    } else if (key == "labels" && c == 0x7b) {
      r.i++;
      while (r.peek() == 0x22) {
        const k = r.str();
        if (r.peek() != 0x3a) return;
        r.i++;
        if (r.peek() == 0x22) info.labels.set(k, r.str());
        else r.skip();
        if (r.peek() == 0x2c) r.i++;
      }
      if (r.peek() == 0x7d) r.i++;
    } else r.skip();
    if (r.peek() != 0x2c) return;
    r.i++;
  }
}
