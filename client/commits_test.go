package client

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"vers/api"
	"vers/internal/errdefs"
)

// TestExportCommitTruncated: an archive cut short is an error, even when
// what arrived ends on a clean boundary.
func TestExportCommitTruncated(t *testing.T) {
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-tar")
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 8192))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	var got bytes.Buffer
	err := c.ExportCommit(context.Background(), "db-ready", &got)
	if err == nil || !strings.Contains(err.Error(), "arrived incomplete") {
		t.Fatalf("%d bytes, error %v", got.Len(), err)
	}
}

func TestCommitRefsRequired(t *testing.T) {
	c := &Client{}
	ctx := context.Background()
	for name, err := range map[string]error{
		"get":     func() error { _, err := c.GetCommit(ctx, ""); return err }(),
		"history": func() error { _, err := c.CommitHistory(ctx, ""); return err }(),
		"export":  c.ExportCommit(ctx, "", &bytes.Buffer{}),
		"run":     func() error { _, err := c.RunCommit(ctx, "", api.RunCommitRequest{}); return err }(),
		"rm":      func() error { _, err := c.RemoveCommits(ctx, []string{"a", ""}); return err }(),
		"tag":     c.RemoveTag(ctx, ""),
		"sleep":   func() error { _, err := c.Sleep(ctx, ""); return err }(),
	} {
		if !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s with no ref: %v", name, err)
		}
	}
}
