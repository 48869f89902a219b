package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"vers/api"
	"vers/internal/errdefs"
)

// serve runs h on a unix socket and returns a client of it.
func serve(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "versd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return New(sock)
}

// endless is a body that never ends, like a large file.
type endless struct{}

func (endless) Read(p []byte) (int, error) { return len(p), nil }

// TestWriteFileEarlyAnswer: when versd answers before the body is sent
// (the VM's filesystem is full), the client returns that answer at once,
// not a broken connection once it has sent everything.
func TestWriteFileEarlyAnswer(t *testing.T) {
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		io.CopyN(io.Discard, r.Body, 1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInsufficientStorage)
		json.NewEncoder(w).Encode(api.Error{Code: api.CodeNoSpace, Message: "write /mnt/x: the filesystem of /mnt is full"})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.WriteFile(ctx, "vm", "/mnt/x", 0o644, endless{})
	if !errors.Is(err, errdefs.ErrNoSpace) {
		t.Fatalf("got %v, want no space", err)
	}
}

// TestReadFileTruncated: a response cut short is an error, never a short file.
func TestReadFileTruncated(t *testing.T) {
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("part"))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	rc, _, err := c.ReadFile(context.Background(), "vm", "/x")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, err := io.ReadAll(rc); err == nil {
		t.Fatalf("read %q without an error", b)
	}
}
