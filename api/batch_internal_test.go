package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBatchBudget: batch bodies decoded at once share a byte budget; a
// batch that does not fit gets 429 with Retry-After naming what to do, and
// the budget comes back when the batch ends. (Empty batches: no engine is
// needed to hold or answer them.)
func TestBatchBudget(t *testing.T) {
	t.Parallel()
	s := New(Config{MaxTaskBytes: 256, MaxBatchBytes: 1024, BatchMemory: 1024})
	srv := httptest.NewServer(s)
	defer srv.Close()
	post := func(body io.Reader, contentLength int64) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL+"/v1/tasks/batch", body)
		req.ContentLength = contentLength
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Error(err)
			return nil, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	// A batch of unknown length reserves the whole limit while it is read.
	pr, pw := io.Pipe()
	first := make(chan int, 1)
	go func() {
		resp, _ := post(pr, -1)
		if resp != nil {
			first <- resp.StatusCode
		}
		close(first)
	}()
	io.WriteString(pw, `{"tasks": [`)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		s.batches.mu.Lock()
		used := s.batches.used
		s.batches.mu.Unlock()
		if used == 1024 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first batch did not reserve the budget (used %d)", used)
		}
	}
	small := `{"tasks": []}`
	resp, body := post(strings.NewReader(small), int64(len(small)))
	if resp == nil || resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" ||
		!strings.Contains(body, `"busy"`) || !strings.Contains(body, "send smaller batches") {
		t.Errorf("batch while another holds the budget: %v %s, want 429 busy with Retry-After: 1", resp, body)
	}
	io.WriteString(pw, `]}`)
	pw.Close()
	if code := <-first; code != 200 {
		t.Fatalf("first batch: status %d, want 200", code)
	}
	if resp, body := post(strings.NewReader(small), int64(len(small))); resp == nil || resp.StatusCode != 200 {
		t.Errorf("batch after the first ended: %v %s, want 200 (budget released)", resp, body)
	}
}
