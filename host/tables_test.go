package host

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/wasmtask/wasmtask/dispatch"
)

// TestLoadBoundsTables: a module's tables are bounded at load by
// Limits.TableElements (clamped to the operator's maximum) and count
// against the memory limit; the message says what to raise.
func TestLoadBoundsTables(t *testing.T) {
	cases := []struct {
		name      string
		module    string
		max       Limits // operator maxima
		lim       Limits // what the plugin asks for
		wantError []string
	}{
		{name: "1 GiB table under the default limit", module: "bigtable",
			wantError: []string{"tables of 134217728 elements", "1048576 KiB", "above the limit of 65536 elements",
				"limits.table_elements", "serve --max-table-elements"}},
		{name: "plugin asks for more than the operator allows", module: "bigtable", lim: Limits{TableElements: 1 << 27},
			max:       Limits{TableElements: 1 << 20},
			wantError: []string{"134217728 elements", "above the limit of 1048576 elements"}},
		{name: "within a raised limit but over the memory limit", module: "bigtable",
			lim: Limits{TableElements: 1 << 27, MemoryPages: 4096}, max: Limits{TableElements: 1 << 27},
			wantError: []string{"minimum memory of 1 pages and tables of 134217728 elements", "above the memory limit of 4096 pages",
				"tables count against limits.memory_pages"}},
		{name: "small table fits", module: "tablegrow"},
		{name: "small table over a limit of 5", module: "tablegrow", lim: Limits{TableElements: 5},
			wantError: []string{"tables of 10 elements", "above the limit of 5 elements"}},
		{name: "table and memory minimum fill the memory limit", module: "tablegrow", lim: Limits{MemoryPages: 1},
			wantError: []string{"minimum memory of 1 pages and tables of 10 elements, 65 KiB together", "memory limit of 1 pages (64 KiB)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHost(t, Config{Max: tc.max})
			wasm := readWasm(t, tc.module)
			m, err := h.LoadLimits(context.Background(), wasm, tc.lim)
			if len(tc.wantError) == 0 {
				if err != nil {
					t.Fatalf("LoadLimits: %v", err)
				}
				if m.TableElements != 10 {
					t.Errorf("TableElements = %d, want 10", m.TableElements)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("LoadLimits: %v (%T), want a *ValidationError", err, err)
			}
			for _, s := range tc.wantError {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("LoadLimits: %v\nwant it to contain %q", err, s)
				}
			}
		})
	}
}

// TestTableGrowRefusedPastLimit: table.grow within the limit succeeds,
// past it returns -1 and leaves the table as it was, whether or not the
// module declares a maximum.
func TestTableGrowRefusedPastLimit(t *testing.T) {
	cases := []struct {
		name     string
		limit    uint32 // Limits.TableElements; 0 = default
		grow     int32
		wantOld  int32
		wantSize int32
	}{
		{name: "up to the limit", limit: 100, grow: 90, wantOld: 10, wantSize: 100},
		{name: "one past the limit", limit: 100, grow: 91, wantOld: -1, wantSize: 10},
		{name: "up to the default limit", grow: 65536 - 10, wantOld: 10, wantSize: 65536},
		{name: "one past the default limit", grow: 65536 - 9, wantOld: -1, wantSize: 10},
		{name: "a gigabyte", grow: 1 << 27, wantOld: -1, wantSize: 10},
	}
	h := newTestHost(t, Config{})
	wasm := readWasm(t, "tablegrow")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := h.LoadLimits(context.Background(), wasm, Limits{TableElements: tc.limit})
			if err != nil {
				t.Fatalf("LoadLimits: %v", err)
			}
			in := binary.LittleEndian.AppendUint32(nil, uint32(tc.grow))
			res := h.Run(context.Background(), m, Attempt{Input: in})
			if res.Outcome != dispatch.OutcomeOK {
				t.Fatalf("outcome %s (%s), want ok", res.Outcome, res.Error)
			}
			if got, want := string(res.Output), le32(tc.wantOld, tc.wantSize); got != want {
				t.Errorf("output (old size, size) = %v, want %v", []byte(got), []byte(want))
			}
		})
	}
}

// TestTableSectionShare: several tables share the limit; a smaller
// declared maximum stays.
func TestTableSectionShare(t *testing.T) {
	funcref := []byte{0x70}
	tables := []tableDecl{{refType: funcref, min: 10}, {refType: funcref, min: 20, max: 25, hasMax: true}, {refType: funcref, min: 0}}
	got, err := parseTables(tableSection(tables, 100))
	if err != nil {
		t.Fatal(err)
	}
	// Room left by the minimums: 70, a share of 23 each.
	want := []struct{ min, max uint32 }{{10, 33}, {20, 25}, {0, 23}}
	for i, w := range want {
		if !got[i].hasMax || got[i].min != w.min || got[i].max != w.max {
			t.Errorf("table %d = %+v, want min %d max %d", i, got[i], w.min, w.max)
		}
	}
}

// TestBoundedModuleRewritesBoth: a module with a table and a memory
// maximum gets both sections rewritten in one copy, the rest of its bytes
// unchanged, and still runs with the declared maximum enforced by the
// host (a grow past it is refused).
func TestBoundedModuleRewritesBoth(t *testing.T) {
	wasm := readWasm(t, "tablemem")
	l, err := readLayout(wasm)
	if err != nil {
		t.Fatal(err)
	}
	out := boundedModule(wasm, l, 100, true)
	got, err := readLayout(out)
	if err != nil {
		t.Fatalf("readLayout of the rewritten module: %v", err)
	}
	if len(got.tables) != 1 || !got.tables[0].hasMax || got.tables[0].max > 100 || got.tables[0].min != 10 {
		t.Errorf("rewritten tables %+v, want min 10 and a max of at most 100", got.tables)
	}
	if got.memMax != 0 || got.memMin != 1 {
		t.Errorf("rewritten memory: min %d max %d, want min 1 and no max", got.memMin, got.memMax)
	}
	var before, after [][]byte // the sections other than table and memory
	for _, c := range []struct {
		b   []byte
		out *[][]byte
	}{{wasm, &before}, {out, &after}} {
		eachSection(c.b, func(id byte, body []byte, _, _ int) error {
			if id != sectionTable && id != sectionMemory {
				*c.out = append(*c.out, body)
			}
			return nil
		})
	}
	if len(before) != len(after) {
		t.Fatalf("%d other sections before, %d after", len(before), len(after))
	}
	for i := range before {
		if string(before[i]) != string(after[i]) {
			t.Errorf("section %d changed", i)
		}
	}
	h := newTestHost(t, Config{})
	m := mustLoad(t, h, wasm, 0)
	for _, tc := range []struct {
		grow int
		want string
	}{{3, le32(1)}, {4, le32(-1)}} { // 1+3 = the declared maximum of 4; 1+4 is past it
		res := h.Run(context.Background(), m, Attempt{Input: make([]byte, tc.grow), Limits: DefaultLimits()})
		if res.Outcome != dispatch.OutcomeOK || string(res.Output) != tc.want {
			t.Errorf("grow %d: %s %q (%s), want ok %q", tc.grow, res.Outcome, res.Output, res.Error, tc.want)
		}
	}
}
