package client

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"vers/api"
	"vers/internal/errdefs"
)

// TestReadTreeCut: an archive whose response is aborted between two
// entries, where it looks whole to a tar reader, is an error.
func TestReadTreeCut(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "a", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1})
	tw.Write([]byte("a"))
	tw.Flush() // no end of archive
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/vms/vm/tree" || r.URL.Query().Get("path") != "/root/d" {
			t.Errorf("request %s", r.URL)
		}
		w.WriteHeader(http.StatusOK)
		w.Write(buf.Bytes())
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	rc, err := c.ReadTree(context.Background(), "vm", "/root/d")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = io.ReadAll(rc)
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("a cut archive read with %v", err)
	}
}

// TestWriteTreeAnswers: the result is decoded; an answer before the body's
// end (a full VM filesystem) comes back at once.
func TestWriteTreeAnswers(t *testing.T) {
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		w.Header().Set("Content-Type", "application/json")
		if q.Get("path") == "/full" {
			io.CopyN(io.Discard, r.Body, 1)
			w.WriteHeader(http.StatusInsufficientStorage)
			json.NewEncoder(w).Encode(api.Error{Code: api.CodeNoSpace, Message: "/full: the filesystem is full"})
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		json.NewEncoder(w).Encode(api.TreeResult{Path: q.Get("path") + "/" + q.Get("name"), Bytes: n})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.WriteTree(ctx, "vm", "/root", "proj", strings.NewReader("12345"))
	if err != nil || res.Path != "/root/proj" || res.Bytes != 5 {
		t.Fatalf("%+v %v", res, err)
	}
	if _, err := c.WriteTree(ctx, "vm", "/full", "proj", endless{}); !errors.Is(err, errdefs.ErrNoSpace) {
		t.Fatalf("got %v, want no space", err)
	}
}
