// Extism plugins written with the AssemblyScript PDK (@extism/as-pdk 1.0.0),
// nothing wasmtask-specific: the same module runs under any Extism host.
//
//   count_vowels  input text -> {"count": N, "vowels": V, "greeting": G}
//                 (config "vowels" overrides the vowel set; a var counts the
//                 vowels seen so far in this attempt)
//   fail          error_set("...") and return 1
//   spin          never returns (a timeout)
//   fetch         GET the URL given as input, output "<status> <body>"
//   log_levels    one log line per level
//
// Build: scripts/build-extism-plugins.sh (asc -O3 --runtime stub
// --use abort=assembly/index/abortWithError).
import { Config, Host, LogLevel, Memory, Var } from "@extism/as-pdk";
import { error_set, http_request, length } from "@extism/as-pdk/lib/env";

// abortWithError turns an AssemblyScript abort into an Extism error.
export function abortWithError(message: string | null, fileName: string | null, line: u32, column: u32): void {
  const msg = "abort: " + (message === null ? "?" : message) + " at " +
    (fileName === null ? "?" : fileName) + ":" + line.toString() + ":" + column.toString();
  error_set(Memory.allocateString(msg).offset);
  unreachable();
}

export function count_vowels(): i32 {
  const input = Host.inputString();
  let vowels = Config.get("vowels");
  if (vowels === null) {
    vowels = "aeiouAEIOU";
  }
  let count = 0;
  for (let i = 0; i < input.length; i++) {
    if (vowels.includes(input.charAt(i))) {
      count++;
    }
  }
  // a var per attempt: starts empty every time
  const seen = Var.getString("seen");
  const total = (seen === null ? 0 : I32.parseInt(seen)) + count;
  Var.set("seen", Uint8Array.wrap(String.UTF8.encode(total.toString())));

  const greeting = Config.get("greeting");
  Host.log(LogLevel.Info, "counted " + count.toString() + " vowels");
  Host.outputString('{"count": ' + count.toString() + ', "vowels": "' + vowels +
    '", "greeting": "' + (greeting === null ? "" : greeting) + '", "seen_before": ' +
    (seen === null ? "false" : "true") + "}");
  return 0;
}

export function fail(): i32 {
  const input = Host.inputString();
  error_set(Memory.allocateString("cannot handle input: " + input).offset);
  return 1;
}

export function spin(): i32 {
  let i: u64 = 0;
  while (true) {
    i++;
  }
  return <i32>i;
}

export function fetch(): i32 {
  const url = Host.inputString();
  const req = Memory.allocateString('{"url": "' + url + '", "method": "GET"}');
  const off = http_request(req.offset, 0);
  let body = "";
  if (off != 0) {
    body = new Memory(off, length(off)).toString();
  }
  Host.outputString(body);
  return 0;
}

export function log_levels(): i32 {
  Host.log(LogLevel.Debug, "a debug line");
  Host.log(LogLevel.Info, "an info line");
  Host.log(LogLevel.Warn, "a warning");
  Host.log(LogLevel.Error, "an error line");
  return 0;
}
