//! The Rust SDK for wasmtask handlers: guest ABI `wasmtask_v1` (sdk/ABI.md),
//! std only, Rust 1.63 or newer (edition 2018).
//!
//! ```ignore
//! fn upper(t: &mut wasmtask::Task) -> wasmtask::Result {
//!     let out = t.input().to_ascii_uppercase();
//!     t.output(&out)
//! }
//! wasmtask::handler!(upper);
//! ```
//!
//! `Ok(())` is success. An `Err` fails the attempt: retryably by default
//! (any `std::error::Error` converts with `?`), without retry when made with
//! [`Error::permanent`]. A panic aborts the instance: the attempt ends as a
//! trap (retried) with the panic message in the log.
//!
//! Outside wasm32 (`cargo test` on your machine) the ABI is served by
//! [`Fake`], an in-memory host.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

/// The negative results of the ABI.
pub const E_INVALID: i32 = -1;
pub const E_NOT_FOUND: i32 = -2;
pub const E_TOO_LARGE: i32 = -3;
pub const E_CANCELLED: i32 = -4;
pub const E_UNSUPPORTED: i32 = -5;
pub const E_QUOTA: i32 = -6;

/// The raw imports of `wasmtask_v1`, one to one.
#[cfg(target_arch = "wasm32")]
pub mod sys {
    #[link(wasm_import_module = "wasmtask_v1")]
    extern "C" {
        pub fn input_len() -> i32;
        pub fn input_read(offset: u32, buf: *mut u8, limit: u32) -> i32;
        pub fn output_write(ptr: *const u8, len: u32) -> i32;
        pub fn fail(kind: i32, ptr: *const u8, len: u32);
        pub fn log(level: i32, ptr: *const u8, len: u32);
        pub fn task_info(buf: *mut u8, limit: u32) -> i32;
        pub fn config_get(key_ptr: *const u8, key_len: u32, buf: *mut u8, limit: u32) -> i32;
        pub fn submit(spec_ptr: *const u8, spec_len: u32, id_buf: *mut u8, id_limit: u32) -> i32;
        pub fn heartbeat(ptr: *const u8, len: u32) -> i32;
        pub fn cancelled() -> i32;
    }
}

/// The ABI over slices: the imports on wasm32, the [`Fake`] elsewhere.
#[cfg(target_arch = "wasm32")]
mod abi {
    use super::sys;

    pub fn input_len() -> i32 {
        unsafe { sys::input_len() }
    }
    pub fn input_read(off: u32, buf: &mut [u8]) -> i32 {
        unsafe { sys::input_read(off, buf.as_mut_ptr(), buf.len() as u32) }
    }
    pub fn output_write(b: &[u8]) -> i32 {
        unsafe { sys::output_write(b.as_ptr(), b.len() as u32) }
    }
    pub fn fail(kind: i32, msg: &[u8]) {
        unsafe { sys::fail(kind, msg.as_ptr(), msg.len() as u32) }
    }
    pub fn log(level: i32, msg: &[u8]) {
        unsafe { sys::log(level, msg.as_ptr(), msg.len() as u32) }
    }
    pub fn task_info(buf: &mut [u8]) -> i32 {
        unsafe { sys::task_info(buf.as_mut_ptr(), buf.len() as u32) }
    }
    pub fn config_get(key: &[u8], buf: &mut [u8]) -> i32 {
        unsafe { sys::config_get(key.as_ptr(), key.len() as u32, buf.as_mut_ptr(), buf.len() as u32) }
    }
    pub fn submit(spec: &[u8], id: &mut [u8]) -> i32 {
        unsafe { sys::submit(spec.as_ptr(), spec.len() as u32, id.as_mut_ptr(), id.len() as u32) }
    }
    pub fn heartbeat(detail: &[u8]) -> i32 {
        unsafe { sys::heartbeat(detail.as_ptr(), detail.len() as u32) }
    }
    pub fn cancelled() -> i32 {
        unsafe { sys::cancelled() }
    }
}

/// A failed attempt: retryable unless made with [`Error::permanent`].
pub struct Error {
    permanent: bool,
    code: i32,
    message: String,
}

impl Error {
    /// A failure that is retried under the task's `max_attempts`.
    pub fn retryable(message: impl fmt::Display) -> Error {
        Error { permanent: false, code: 0, message: message.to_string() }
    }

    /// A failure that must not be retried (fail kind 0).
    pub fn permanent(message: impl fmt::Display) -> Error {
        Error { permanent: true, code: 0, message: message.to_string() }
    }

    fn abi(code: i32) -> Error {
        let what = match code {
            E_INVALID => "invalid argument",
            E_NOT_FOUND => "not found",
            E_TOO_LARGE => "too large",
            E_CANCELLED => "cancelled",
            E_UNSUPPORTED => "unsupported by this host",
            E_QUOTA => "quota exceeded",
            _ => "unknown error",
        };
        Error { permanent: false, code, message: format!("wasmtask: {} ({})", what, code) }
    }

    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The ABI's negative result behind this error (`E_*`), or 0.
    pub fn code(&self) -> i32 {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.permanent { "permanent" } else { "retryable" };
        write!(f, "Error({}: {:?})", kind, self.message)
    }
}

/// Any standard error converts (with `?`) into a retryable failure.
impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Error {
        Error::retryable(e)
    }
}

/// What a handler returns.
pub type Result<T = ()> = std::result::Result<T, Error>;

/// Exports `$f`, a `fn(&mut Task) -> wasmtask::Result`, as `wasmtask_handle`.
#[macro_export]
macro_rules! handler {
    ($f:path) => {
        #[no_mangle]
        pub extern "C" fn wasmtask_handle() -> i32 {
            $crate::run($f)
        }
    };
}

/// Runs one attempt of f and maps its result to wasmtask_handle's return
/// value (0 success, 1 failure). [`handler!`] calls it.
pub fn run<F: FnOnce(&mut Task) -> Result>(f: F) -> i32 {
    let mut t = Task { input: read_input(), info: RefCell::new(None) };
    match f(&mut t) {
        Ok(()) => 0,
        Err(e) => {
            abi::fail(if e.permanent { 0 } else { 1 }, e.message.as_bytes());
            1
        }
    }
}

fn read_input() -> Vec<u8> {
    let n = abi::input_len().max(0) as usize;
    let mut buf = vec![0u8; n];
    let mut off = 0;
    while off < n {
        let got = abi::input_read(off as u32, &mut buf[off..]);
        if got <= 0 {
            break;
        }
        off += got as usize;
    }
    buf.truncate(off);
    buf
}

/// Level of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug = -1,
    Info = 0,
    Warn = 1,
    Error = 2,
}

/// What `task_info` returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Info {
    pub task_id: String,
    pub run_id: String,
    /// 1-based.
    pub attempt: i64,
    pub max_attempts: i64,
    pub handler: String,
    /// `sha256:<hex>` of the module.
    pub module: String,
    /// Unix milliseconds.
    pub deadline_ms: i64,
    /// Empty for a root task.
    pub parent_id: String,
    pub labels: BTreeMap<String, String>,
}

impl Info {
    fn parse(b: &[u8]) -> Info {
        let mut info = Info::default();
        let fields = match json::parse_object(b) {
            Some(f) => f,
            None => return info,
        };
        for (k, v) in fields {
            match (k.as_str(), v) {
                ("task_id", json::Value::Str(s)) => info.task_id = s,
                ("run_id", json::Value::Str(s)) => info.run_id = s,
                ("attempt", json::Value::Int(n)) => info.attempt = n,
                ("max_attempts", json::Value::Int(n)) => info.max_attempts = n,
                ("handler", json::Value::Str(s)) => info.handler = s,
                ("module", json::Value::Str(s)) => info.module = s,
                ("deadline_ms", json::Value::Int(n)) => info.deadline_ms = n,
                ("parent_id", json::Value::Str(s)) => info.parent_id = s,
                ("labels", json::Value::Obj(m)) => {
                    for (lk, lv) in m {
                        if let json::Value::Str(s) = lv {
                            info.labels.insert(lk, s);
                        }
                    }
                }
                _ => {}
            }
        }
        info
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn to_json(&self) -> String {
        let mut s = String::from("{");
        let strs = [("task_id", &self.task_id), ("run_id", &self.run_id), ("handler", &self.handler), ("module", &self.module), ("parent_id", &self.parent_id)];
        for (k, v) in strs.iter() {
            json::quote(&mut s, k);
            s.push(':');
            json::quote(&mut s, v);
            s.push(',');
        }
        s.push_str(&format!("\"attempt\":{},\"max_attempts\":{},\"deadline_ms\":{},\"labels\":", self.attempt, self.max_attempts, self.deadline_ms));
        json::map(&mut s, &self.labels);
        s.push('}');
        s
    }
}

/// A child task (the task spec of docs/task-spec.md); empty fields are left out.
/// Without `id`, the host derives one from this run and the submission's
/// ordinal, so a retried handler creates no duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildSpec {
    pub id: String,
    /// Required: a plugin name, optionally pinned as `name@sha256:<hex>`.
    pub handler: String,
    /// UTF-8 text handed to the child.
    pub input: String,
    /// Or raw bytes, base64.
    pub input_b64: String,
    pub max_attempts: u32,
    /// A Go duration such as "30s".
    pub timeout: String,
    pub priority: i32,
    /// Ids of tasks (earlier siblings included) this child waits for.
    pub after: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl ChildSpec {
    /// The spec as JSON, as `submit` takes it.
    pub fn to_json(&self) -> String {
        let mut s = String::from("{\"handler\":");
        json::quote(&mut s, &self.handler);
        for (k, v) in [("id", &self.id), ("input", &self.input), ("input_b64", &self.input_b64), ("timeout", &self.timeout)].iter() {
            if !v.is_empty() {
                s.push(',');
                json::quote(&mut s, k);
                s.push(':');
                json::quote(&mut s, v);
            }
        }
        if self.max_attempts != 0 {
            s.push_str(&format!(",\"max_attempts\":{}", self.max_attempts));
        }
        if self.priority != 0 {
            s.push_str(&format!(",\"priority\":{}", self.priority));
        }
        if !self.after.is_empty() {
            s.push_str(",\"after\":[");
            for (i, a) in self.after.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                json::quote(&mut s, a);
            }
            s.push(']');
        }
        if !self.labels.is_empty() {
            s.push_str(",\"labels\":");
            json::map(&mut s, &self.labels);
        }
        s.push('}');
        s
    }
}

/// The attempt being run.
pub struct Task {
    input: Vec<u8>,
    info: RefCell<Option<Info>>,
}

impl Task {
    /// The task input (read whole before the handler runs).
    pub fn input(&self) -> &[u8] {
        &self.input
    }

    /// Appends b to the attempt's output. Past the plugin's output limit it
    /// fails with code `E_TOO_LARGE` and the attempt ends as output_too_large.
    pub fn output(&self, b: &[u8]) -> Result {
        let r = abi::output_write(b);
        if r < 0 {
            return Err(Error::abi(r));
        }
        Ok(())
    }

    pub fn output_str(&self, s: &str) -> Result {
        self.output(s.as_bytes())
    }

    /// Writes one log line (dropped past the plugin's log quota).
    pub fn log(&self, level: Level, msg: &str) {
        abi::log(level as i32, msg.as_bytes())
    }

    /// The attempt's description (ids, attempt number, deadline...), read once.
    pub fn info(&self) -> Info {
        let mut cached = self.info.borrow_mut();
        if cached.is_none() {
            let n = abi::task_info(&mut []); // size probe
            let mut info = Info::default();
            if n > 0 {
                let mut buf = vec![0u8; n as usize];
                if abi::task_info(&mut buf) == n {
                    info = Info::parse(&buf);
                }
            }
            *cached = Some(info);
        }
        cached.clone().unwrap_or_default()
    }

    /// A value of the plugin's manifest config, or None when absent.
    pub fn config(&self, key: &str) -> Option<String> {
        let n = abi::config_get(key.as_bytes(), &mut []);
        if n < 0 {
            return None;
        }
        let mut buf = vec![0u8; n as usize];
        if abi::config_get(key.as_bytes(), &mut buf) != n {
            return None;
        }
        Some(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Stages a child task, committed when this attempt succeeds, and
    /// returns its id.
    pub fn submit(&self, spec: &ChildSpec) -> Result<String> {
        self.submit_json(&spec.to_json())
    }

    /// Stages a child task given as a JSON task spec; see [`Task::submit`].
    pub fn submit_json(&self, spec: &str) -> Result<String> {
        let mut id = [0u8; 256];
        let n = abi::submit(spec.as_bytes(), &mut id);
        if n < 0 {
            return Err(Error::abi(n));
        }
        Ok(String::from_utf8_lossy(&id[..n as usize]).into_owned())
    }

    /// Reports progress and extends the lease; true when the attempt should stop.
    pub fn heartbeat(&self, detail: &str) -> bool {
        abi::heartbeat(detail.as_bytes()) == 1
    }

    /// True when the attempt should stop (canceled, or close to its deadline).
    pub fn cancelled(&self) -> bool {
        abi::cancelled() == 1
    }
}

/// A minimal JSON reader (for task_info) and writer (for child specs).
mod json {
    use std::collections::BTreeMap;

    pub enum Value {
        Str(String),
        Int(i64),
        Obj(Vec<(String, Value)>),
        Other,
    }

    struct Parser<'a> {
        b: &'a [u8],
        i: usize,
    }

    pub fn parse_object(b: &[u8]) -> Option<Vec<(String, Value)>> {
        let mut p = Parser { b, i: 0 };
        match p.value()? {
            Value::Obj(fields) => Some(fields),
            _ => None,
        }
    }

    impl<'a> Parser<'a> {
        fn ws(&mut self) {
            while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            }
        }

        fn peek(&mut self) -> Option<u8> {
            self.ws();
            self.b.get(self.i).copied()
        }

        fn value(&mut self) -> Option<Value> {
            match self.peek()? {
                b'"' => self.string().map(Value::Str),
                b'{' => {
                    self.i += 1;
                    let mut fields = Vec::new();
                    if self.peek()? == b'}' {
                        self.i += 1;
                        return Some(Value::Obj(fields));
                    }
                    loop {
                        if self.peek()? != b'"' {
                            return None;
                        }
                        let k = self.string()?;
                        if self.peek()? != b':' {
                            return None;
                        }
                        self.i += 1;
                        fields.push((k, self.value()?));
                        match self.peek()? {
                            b',' => self.i += 1,
                            b'}' => {
                                self.i += 1;
                                return Some(Value::Obj(fields));
                            }
                            _ => return None,
                        }
                    }
                }
                b'[' => {
                    self.i += 1;
                    if self.peek()? == b']' {
                        self.i += 1;
                        return Some(Value::Other);
                    }
                    loop {
                        self.value()?;
                        match self.peek()? {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                return Some(Value::Other);
                            }
                            _ => return None,
                        }
                    }
                }
                _ => {
                    let start = self.i;
                    while self.i < self.b.len() && !matches!(self.b[self.i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        self.i += 1;
                    }
                    let tok = std::str::from_utf8(&self.b[start..self.i]).ok()?;
                    Some(tok.parse::<i64>().map(Value::Int).unwrap_or(Value::Other))
                }
            }
        }

        fn hex4(&mut self) -> Option<u32> {
            let h = self.b.get(self.i..self.i + 4)?;
            self.i += 4;
            u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
        }

        fn string(&mut self) -> Option<String> {
            self.i += 1; // opening quote
            let mut out: Vec<u8> = Vec::new();
            loop {
                let c = *self.b.get(self.i)?;
                self.i += 1;
                match c {
                    b'"' => return String::from_utf8(out).ok(),
                    b'\\' => {
                        let e = *self.b.get(self.i)?;
                        self.i += 1;
                        match e {
                            b'n' => out.push(b'\n'),
                            b'r' => out.push(b'\r'),
                            b't' => out.push(b'\t'),
                            b'b' => out.push(8),
                            b'f' => out.push(12),
                            b'u' => {
                                let mut cp = self.hex4()?;
                                if (0xD800..0xDC00).contains(&cp) && self.b.get(self.i..self.i + 2) == Some(b"\\u") {
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF);
                                }
                                let ch = std::char::from_u32(cp).unwrap_or('\u{FFFD}');
                                let mut tmp = [0u8; 4];
                                out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                            }
                            other => out.push(other),
                        }
                    }
                    _ => out.push(c),
                }
            }
        }
    }

    /// Appends s as a JSON string.
    pub fn quote(out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
    }

    pub fn map(out: &mut String, m: &BTreeMap<String, String>) {
        out.push('{');
        for (i, (k, v)) in m.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            quote(out, k);
            out.push(':');
            quote(out, v);
        }
        out.push('}');
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn get_str(b: &[u8], key: &str) -> Option<String> {
        parse_object(b)?.into_iter().find_map(|(k, v)| match v {
            Value::Str(s) if k == key => Some(s),
            _ => None,
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use fake::Fake;

/// An in-memory host for testing handlers with `cargo test`, outside wasm32.
#[cfg(not(target_arch = "wasm32"))]
mod fake {
    use super::{json, Info, Result, Task};
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// Set its fields, call [`Fake::run`], read what the handler did.
    #[derive(Clone, Debug, Default)]
    pub struct Fake {
        pub input: Vec<u8>,
        pub info: Info,
        pub config: BTreeMap<String, String>,
        /// 0: unlimited.
        pub output_limit: usize,
        pub stop_now: bool,

        pub output: Vec<u8>,
        /// "[level] message" per log line.
        pub logs: Vec<String>,
        pub failed: bool,
        /// 0 permanent, 1 retryable.
        pub fail_kind: i32,
        pub fail_msg: String,
        /// (id, spec JSON) of each submitted child.
        pub children: Vec<(String, String)>,
    }

    thread_local! {
        static CURRENT: RefCell<Option<Fake>> = RefCell::new(None);
    }

    impl Fake {
        /// Runs f against this fake and returns what wasmtask_handle would:
        /// 0 success, 1 failure.
        pub fn run<F: FnOnce(&mut Task) -> Result>(&mut self, f: F) -> i32 {
            CURRENT.with(|c| *c.borrow_mut() = Some(std::mem::take(self)));
            let code = super::run(f);
            CURRENT.with(|c| *self = c.borrow_mut().take().unwrap_or_default());
            code
        }
    }

    fn with<T>(f: impl FnOnce(&mut Fake) -> T) -> T {
        CURRENT.with(|c| f(c.borrow_mut().as_mut().expect("wasmtask: outside wasm32, run handlers through wasmtask::Fake::run")))
    }

    fn fits(b: &[u8], buf: &mut [u8]) -> i32 {
        if b.len() <= buf.len() {
            buf[..b.len()].copy_from_slice(b);
        }
        b.len() as i32
    }

    pub fn input_len() -> i32 {
        with(|f| f.input.len() as i32)
    }
    pub fn input_read(off: u32, buf: &mut [u8]) -> i32 {
        with(|f| {
            let off = off as usize;
            if off > f.input.len() {
                return super::E_INVALID;
            }
            let n = buf.len().min(f.input.len() - off);
            buf[..n].copy_from_slice(&f.input[off..off + n]);
            n as i32
        })
    }
    pub fn output_write(b: &[u8]) -> i32 {
        with(|f| {
            if f.output_limit > 0 && f.output.len() + b.len() > f.output_limit {
                return super::E_TOO_LARGE;
            }
            f.output.extend_from_slice(b);
            b.len() as i32
        })
    }
    pub fn fail(kind: i32, msg: &[u8]) {
        with(|f| {
            f.failed = true;
            f.fail_kind = kind;
            f.fail_msg = String::from_utf8_lossy(msg).into_owned();
        })
    }
    pub fn log(level: i32, msg: &[u8]) {
        let name = match level {
            -1 => "debug",
            1 => "warn",
            2 => "error",
            _ => "info",
        };
        with(|f| f.logs.push(format!("[{}] {}", name, String::from_utf8_lossy(msg))))
    }
    pub fn task_info(buf: &mut [u8]) -> i32 {
        with(|f| fits(f.info.to_json().as_bytes(), buf))
    }
    pub fn config_get(key: &[u8], buf: &mut [u8]) -> i32 {
        with(|f| match f.config.get(&*String::from_utf8_lossy(key)) {
            Some(v) => fits(v.as_bytes(), buf),
            None => super::E_NOT_FOUND,
        })
    }
    pub fn submit(spec: &[u8], id_buf: &mut [u8]) -> i32 {
        with(|f| {
            if json::get_str(spec, "handler").unwrap_or_default().is_empty() {
                return super::E_INVALID;
            }
            let mut id = json::get_str(spec, "id").unwrap_or_default();
            if id.is_empty() {
                id = format!("{}-c{}", f.info.run_id.replace('#', "-r"), f.children.len() + 1);
            }
            if id.len() > id_buf.len() {
                return super::E_TOO_LARGE;
            }
            f.children.push((id.clone(), String::from_utf8_lossy(spec).into_owned()));
            fits(id.as_bytes(), id_buf)
        })
    }
    pub fn heartbeat(_detail: &[u8]) -> i32 {
        with(|f| f.stop_now as i32)
    }
    pub fn cancelled() -> i32 {
        with(|f| f.stop_now as i32)
    }
}

#[cfg(not(target_arch = "wasm32"))]
use fake as abi;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn info_config_submit_fail() {
        let mut f = Fake { input: b"hi".to_vec(), ..Default::default() };
        f.info.run_id = "t#2".into();
        f.info.attempt = 2;
        f.info.labels.insert("k".into(), "v \"q\" \u{e9}".into());
        f.config.insert("succeed_on".into(), "5".into());
        let code = f.run(|t| {
            let info = t.info();
            assert_eq!(info.attempt, 2);
            assert_eq!(info.labels["k"], "v \"q\" \u{e9}");
            assert_eq!(t.config("succeed_on").as_deref(), Some("5"));
            assert_eq!(t.config("absent"), None);
            let id = t.submit(&ChildSpec { handler: "up".into(), input: "a\"b\n".into(), ..Default::default() })?;
            assert_eq!(id, "t-r2-c1");
            t.output(t.input())?;
            Err(Error::permanent("no"))
        });
        assert_eq!(code, 1);
        assert_eq!((f.fail_kind, f.fail_msg.as_str(), &f.output[..]), (0, "no", &b"hi"[..]));
        assert_eq!(f.children[0].1, r#"{"handler":"up","input":"a\"b\n"}"#);
    }
}
