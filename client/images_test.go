package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"vers/internal/errdefs"
)

// stream answers with the JSON lines given.
func stream(lines ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	}
}

func TestBuildImage(t *testing.T) {
	var got string
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Method + " " + r.URL.String()
		stream(`{"progress":"[default] one"}`, `{"progress":"[default] two"}`,
			`{"image":{"name":"default","kind":"rootfs","status":"built","size_mib":272}}`)(w, r)
	})
	var progress bytes.Buffer
	img, err := c.BuildImage(context.Background(), "default", true, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if got != "POST /v1/images/default/build?force=true" {
		t.Errorf("request %q", got)
	}
	if img.Name != "default" || img.Kind != "rootfs" || img.SizeMiB != 272 {
		t.Errorf("image %+v", img)
	}
	if progress.String() != "[default] one\n[default] two\n" {
		t.Errorf("progress %q", progress.String())
	}
}

func TestBuildImageFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		h       http.HandlerFunc
		kind    error
		message string
	}{
		{"error line", stream(`{"progress":"[default] one"}`, `{"error":{"code":"unavailable","message":"install debootstrap"}}`), errdefs.ErrUnavailable, "install debootstrap"},
		{"refused", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintln(w, `{"code":"invalid","message":"image \"x\": unknown image"}`)
		}, errdefs.ErrInvalid, `unknown image`},
		{"no result", stream(`{"progress":"[default] one"}`), nil, "connection to versd lost during the build of default: unexpected EOF"},
		{"older daemon", http.NotFound, errdefs.ErrUnavailable, "restart it"},
	} {
		c := serve(t, tc.h)
		_, err := c.BuildImage(context.Background(), "default", false, nil)
		if err == nil || (tc.kind != nil && !errors.Is(err, tc.kind)) || !strings.Contains(err.Error(), tc.message) {
			t.Errorf("%s: %v, want %v mentioning %q", tc.name, err, tc.kind, tc.message)
		}
	}
	if _, err := (&Client{}).BuildImage(context.Background(), "", false, nil); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("no name: %v", err)
	}
}

// TestBuildImageCancel: a cancelled wait returns at once and hangs up, which
// versd sees as its request's end.
func TestBuildImageCancel(t *testing.T) {
	gone := make(chan struct{})
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, `{"progress":"[default] one"}`)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(gone)
	})
	ctx, cancel := context.WithCancel(context.Background())
	progress := cancelOnWrite{cancel}
	_, err := c.BuildImage(ctx, "default", false, progress)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("%v, want cancelled", err)
	}
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not see the client go")
	}
}

// cancelOnWrite cancels at the first line of progress.
type cancelOnWrite struct{ cancel context.CancelFunc }

func (c cancelOnWrite) Write(p []byte) (int, error) {
	c.cancel()
	return len(p), nil
}
