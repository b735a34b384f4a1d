package api

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/wasmtask/wasmtask/cluster"
)

func TestLocalRead(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		local        bool
	}{
		{"GET", "/v1/tasks", true},
		{"GET", "/v1/tasks/a", true},
		{"HEAD", "/v1/tasks/a", true},
		{"GET", "/v1/tasks/a/wait", true},
		{"GET", "/v1/engine", true},
		{"GET", "/v1/openapi.json", true},
		{"GET", "/ui/", true},
		{"GET", "/v1/tasks/", false},
		{"GET", "/v1/engine/history", false}, // sampled by the leader's server
		{"GET", "/v1/workers", false},        // the leader's broker
		{"POST", "/v1/tasks", false},
		{"POST", "/v1/tasks/a/cancel", false},
		{"DELETE", "/v1/tasks/a", false},
		{"POST", "/v1/engine/pause", false},
		{"GET", "/v1/plugins", false}, // attempt counts are the leader's
		{"GET", "/v1/plugins/sw", false},
		{"GET", "/v1/plugins/sw?local=1", true},
		{"GET", "/v1/plugins?local=1", true},
		{"POST", "/v1/plugins/sw/rollback?local=1", false},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			if got := localRead(httptest.NewRequest(tc.method, tc.path, nil)); got != tc.local {
				t.Errorf("localRead = %v, want %v", got, tc.local)
			}
		})
	}
	if id := taskOfPath("/v1/tasks/abc/wait"); id != "abc" {
		t.Errorf("taskOfPath = %q", id)
	}
}

// The index header is set as the answer starts, unless a forwarded
// answer carries the leader's already.
func TestIndexWriter(t *testing.T) {
	for _, tc := range []struct {
		name, preset, want string
		writeHeader        bool
	}{
		{"write only", "", "42", false},
		{"WriteHeader", "", "42", true},
		{"forwarded", "7", "7", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			w := &indexWriter{ResponseWriter: rec, seq: func() uint64 { return 42 }}
			if tc.preset != "" {
				w.Header().Set(IndexHeader, tc.preset)
			}
			if tc.writeHeader {
				w.WriteHeader(http.StatusCreated)
			}
			w.Write([]byte("{}"))
			if got := rec.Header().Get(IndexHeader); got != tc.want {
				t.Errorf("%s = %q, want %q", IndexHeader, got, tc.want)
			}
		})
	}
}

// The client sends back the highest index it was answered, shared by
// the clients given the same tracker; a lower answer does not lower it.
func TestClientSendsMinIndex(t *testing.T) {
	answers := []string{"5", "3", "9", ""}
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get(MinIndexHeader))
		if a := answers[len(got)-1]; a != "" {
			w.Header().Set(IndexHeader, a)
		}
		writeJSON(w, 200, TaskView{ID: "x"})
	}))
	defer srv.Close()
	a := NewClient(srv.URL, "")
	b := NewClient(srv.URL, "")
	b.Index = a.Index
	for _, c := range []*Client{a, b, a, b} {
		if _, err := c.TaskGet(t.Context(), "x"); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"", "5", "5", "9"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d sent %s %q, want %q (all: %q)", i, MinIndexHeader, got[i], want[i], got)
		}
	}
}

// A client following a cluster moves to another node when the one it
// talks to refuses connections, and stays there.
func TestClientFollowsCluster(t *testing.T) {
	var hitsB int
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hitsB++
		writeJSON(w, 200, TaskView{ID: "x"})
	}))
	defer b.Close()
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/cluster" {
			writeJSON(w, 200, ClusterStatus{Status: cluster.Status{Servers: []cluster.Server{{ID: "a", HTTP: "http://" + r.Host}, {ID: "b", HTTP: b.URL}}}})
			return
		}
		writeJSON(w, 200, TaskView{ID: "from-a"})
	}))
	c := NewClient(a.URL, "")
	c.FollowCluster(t.Context())
	if v, err := c.TaskGet(t.Context(), "x"); err != nil || v.ID != "from-a" {
		t.Fatalf("before: %+v %v", v, err)
	}
	a.Close() // refuses connections from now on
	for i := range 3 {
		if v, err := c.TaskGet(t.Context(), "x"); err != nil || v.ID != "x" {
			t.Fatalf("request %d after node a died: %+v %v", i, v, err)
		}
	}
	if hitsB != 3 {
		t.Errorf("node b answered %d requests, want 3", hitsB)
	}
	// A client that does not follow a cluster reports the dead node.
	if _, err := NewClient(a.URL, "").TaskGet(t.Context(), "x"); err == nil {
		t.Error("a client not following the cluster reached a dead node")
	}
}
