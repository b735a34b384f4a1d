package host

import "time"

// Limits bound one attempt of a module. A plugin's manifest sets them; the
// operator's maxima clamp them (Clamp). Zero fields mean "the default".
type Limits struct {
	// MemoryPages caps linear memory, in 64 KiB pages. Default 1024
	// (64 MiB): stock toolchains declare minimums above the former 256
	// (Zig 257 pages, a Go main 271, ruby.wasm 549, .NET 800), and the cap
	// costs nothing until a guest grows into it.
	MemoryPages uint32
	// Timeout of one attempt; the guest is stopped at it. Default 30s.
	Timeout time.Duration
	// Grace before Timeout (or after a cancel) during which cancelled() and
	// heartbeat() tell the guest to stop before it is stopped. Default 1s
	// (never more than a tenth of Timeout).
	Grace time.Duration
	// OutputBytes caps the attempt's output. Default 1 MiB.
	OutputBytes int
	// LogBytes caps the attempt's captured log (log import, stdout and
	// stderr). Past it, lines are dropped and counted. Default 64 KiB.
	LogBytes int
	// Children caps the child tasks one attempt may submit. Default 100.
	Children int
	// TableElements caps the elements of all the module's tables together:
	// the declared minimums are checked at load (and count against
	// MemoryPages at 8 bytes an element), table.grow past it returns -1.
	// Default 65,536 (512 KiB).
	TableElements uint32
}

// DefaultLimits returns the defaults documented on Limits.
func DefaultLimits() Limits {
	return Limits{MemoryPages: 1024, Timeout: 30 * time.Second, Grace: time.Second,
		OutputBytes: 1 << 20, LogBytes: 64 << 10, Children: 100, TableElements: 1 << 16}
}

// DefaultMaxLimits are the operator maxima used when none are configured.
func DefaultMaxLimits() Limits {
	return Limits{MemoryPages: 4096, Timeout: time.Hour, Grace: time.Minute,
		OutputBytes: 64 << 20, LogBytes: 4 << 20, Children: 10_000, TableElements: 1 << 20}
}

// WithMemoryPages returns a copy with MemoryPages set.
func (l Limits) WithMemoryPages(n uint32) Limits { l.MemoryPages = n; return l }

// WithTimeout returns a copy with Timeout set.
func (l Limits) WithTimeout(d time.Duration) Limits { l.Timeout = d; return l }

// WithOutputBytes returns a copy with OutputBytes set.
func (l Limits) WithOutputBytes(n int) Limits { l.OutputBytes = n; return l }

// WithLogBytes returns a copy with LogBytes set.
func (l Limits) WithLogBytes(n int) Limits { l.LogBytes = n; return l }

// WithChildren returns a copy with Children set.
func (l Limits) WithChildren(n int) Limits { l.Children = n; return l }

// WithTableElements returns a copy with TableElements set.
func (l Limits) WithTableElements(n uint32) Limits { l.TableElements = n; return l }

// maxTableElements is the most wazero accepts for one table's minimum.
const maxTableElements = 1 << 27

// orDefault fills zero fields from DefaultLimits.
func (l Limits) orDefault() Limits {
	d := DefaultLimits()
	if l.MemoryPages == 0 {
		l.MemoryPages = d.MemoryPages
	}
	if l.Timeout <= 0 {
		l.Timeout = d.Timeout
	}
	if l.Grace <= 0 {
		l.Grace = d.Grace
	}
	if l.OutputBytes <= 0 {
		l.OutputBytes = d.OutputBytes
	}
	if l.LogBytes <= 0 {
		l.LogBytes = d.LogBytes
	}
	if l.Children <= 0 {
		l.Children = d.Children
	}
	if l.TableElements == 0 {
		l.TableElements = d.TableElements
	}
	return l
}

// Clamp fills defaults and lowers every field to the operator maximum max
// (whose zero fields mean DefaultMaxLimits).
func (l Limits) Clamp(max Limits) Limits {
	l = l.orDefault()
	m := DefaultMaxLimits()
	if max.MemoryPages > 0 {
		m.MemoryPages = max.MemoryPages
	}
	if max.Timeout > 0 {
		m.Timeout = max.Timeout
	}
	if max.Grace > 0 {
		m.Grace = max.Grace
	}
	if max.OutputBytes > 0 {
		m.OutputBytes = max.OutputBytes
	}
	if max.LogBytes > 0 {
		m.LogBytes = max.LogBytes
	}
	if max.Children > 0 {
		m.Children = max.Children
	}
	if max.TableElements > 0 {
		m.TableElements = max.TableElements
	}
	l.MemoryPages = min(l.MemoryPages, m.MemoryPages, 65536)
	l.Timeout = min(l.Timeout, m.Timeout)
	l.Grace = min(l.Grace, m.Grace, l.Timeout/10)
	l.OutputBytes = min(l.OutputBytes, m.OutputBytes)
	l.LogBytes = min(l.LogBytes, m.LogBytes)
	l.Children = min(l.Children, m.Children)
	l.TableElements = min(l.TableElements, m.TableElements, maxTableElements)
	return l
}
