package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wasmtask/wasmtask/dispatch"
	"github.com/wasmtask/wasmtask/plugins"
)

// Error is the API's error body {"error": {code, message, field}} and the
// error type the client returns. errors.Is(err, api.ErrNotFound) works.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	// RetryAfter is the wait a 429 asks for (its Retry-After header).
	RetryAfter time.Duration `json:"-"`
}

func (e *Error) Error() string { return e.Message }

// Is matches errors with the same code, so sentinels below work with errors.Is.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Message == ""
}

// Sentinels for errors.Is on client errors.
var (
	ErrNotFound     = &Error{Code: "not_found"}
	ErrConflict     = &Error{Code: "conflict"}
	ErrInvalid      = &Error{Code: "invalid"}
	ErrUnauthorized = &Error{Code: "unauthorized"}
	// ErrInsufficientStorage: the server's disk is full (507); reads work,
	// submissions are accepted again once space is freed.
	ErrInsufficientStorage = &Error{Code: "insufficient_storage"}
)

// toError maps typed errors of the engine and registry to HTTP errors.
func toError(err error) *Error {
	var e *Error
	var fe *FieldError
	var pve *plugins.ValidationError
	var dve *dispatch.ValidationError
	var busy *dispatch.BusyError
	switch {
	case errors.As(err, &busy):
		return &Error{Status: http.StatusTooManyRequests, Code: "busy", Message: busy.Error(),
			RetryAfter: dispatch.RetryAfterSeconds * time.Second}
	case errors.As(err, &e):
		return e
	case errors.As(err, &fe):
		return &Error{Status: 400, Code: "invalid", Field: fe.Field, Message: fe.Error()}
	case errors.As(err, &dve):
		return &Error{Status: 400, Code: "invalid", Field: dve.Field, Message: dve.Error()}
	case errors.As(err, &pve):
		return &Error{Status: 400, Code: "invalid", Field: pve.Field, Message: pve.Error()}
	case errors.Is(err, dispatch.ErrNotFinal):
		return &Error{Status: 409, Code: "conflict", Message: strings.TrimPrefix(err.Error(), dispatch.ErrNotFinal.Error()+": ")}
	case errors.Is(err, dispatch.ErrConflict):
		return &Error{Status: 409, Code: "conflict", Field: "id", Message: err.Error()}
	case errors.Is(err, dispatch.ErrNotFound), errors.Is(err, plugins.ErrNotFound):
		return &Error{Status: 404, Code: "not_found", Message: err.Error()}
	case errors.Is(err, dispatch.ErrDiskFull):
		return &Error{Status: http.StatusInsufficientStorage, Code: "insufficient_storage", Message: err.Error()}
	case dispatch.IsNoSpace(err): // a store that reports its ENOSPC as it is (a plugin deploy)
		return &Error{Status: http.StatusInsufficientStorage, Code: "insufficient_storage",
			Message: "disk full: " + err.Error() + "; free space in the data dir and try again"}
	case errors.Is(err, dispatch.ErrStopped):
		return &Error{Status: 503, Code: "unavailable", Message: err.Error()}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: 503, Code: "unavailable", Message: "request canceled or timed out: " + err.Error()}
	}
	return &Error{Status: 500, Code: "internal", Message: err.Error()}
}

func writeError(w http.ResponseWriter, err error) {
	e := toError(err)
	if e.RetryAfter > 0 && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, e.Status, map[string]*Error{"error": e})
}

// decodeError reads an error body from a response.
func decodeError(status int, body []byte) *Error {
	var wrap struct {
		Error *Error `json:"error"`
	}
	if json.Unmarshal(body, &wrap) == nil && wrap.Error != nil {
		wrap.Error.Status = status
		return wrap.Error
	}
	return &Error{Status: status, Code: http.StatusText(status), Message: fmt.Sprintf("HTTP %d: %s", status, truncate(string(body), 200))}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// diskFull is the engine's *dispatch.DiskFullError while its disk is full
// (new submissions get 507 before their body is read), nil otherwise.
func (s *Server) diskFull() error {
	if s.cfg.Engine == nil { // a server for tests that need no engine
		return nil
	}
	return s.cfg.Engine.DiskFull()
}
