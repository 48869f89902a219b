package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"vers/client"
	"vers/internal/agent"
	"vers/internal/dirtar"
	"vers/internal/errdefs"
)

// fakeTrees answers the directory routes: ReadTree with body, or with
// readErr before it; WriteTree reads the body to its end, or fails with
// writeErr after its first byte.
type fakeTrees struct {
	body     io.Reader
	readErr  error
	writeErr error
}

func (f *fakeTrees) ReadTree(_ context.Context, ref, path string) (io.ReadCloser, error) {
	if f.readErr != nil {
		return nil, f.readErr
	}
	return io.NopCloser(f.body), nil
}

func (f *fakeTrees) WriteTree(_ context.Context, ref, path, name string, r io.Reader) (agent.TreeResult, error) {
	if f.writeErr != nil {
		io.CopyN(io.Discard, r, 1)
		return agent.TreeResult{}, f.writeErr
	}
	n, err := io.Copy(io.Discard, r)
	return agent.TreeResult{Path: path + "/" + name, Stats: dirtar.Stats{Files: 1, Bytes: n}}, err
}

func treeClient(t *testing.T, f *fakeTrees) *client.Client {
	t.Helper()
	s := &Server{trees: f, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return client.New(serveOnSocket(t, s))
}

// TestReadTreeRoute: the archive streams whole; a guest stream that fails
// part way aborts the response, which the client reads as cut, not ended;
// a failure before the body is an error status.
func TestReadTreeRoute(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := treeClient(t, &fakeTrees{body: strings.NewReader("the whole archive")})
	rc, err := c.ReadTree(ctx, "vm", "/root/d")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(rc); err != nil || string(b) != "the whole archive" {
		t.Fatalf("%q %v", b, err)
	}
	rc.Close()

	cut := io.MultiReader(strings.NewReader("part of it"), failingReader{})
	c = treeClient(t, &fakeTrees{body: cut})
	rc, err = c.ReadTree(ctx, "vm", "/root/d")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(rc); !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("a cut archive: %d bytes, %v", len(b), err)
	}
	rc.Close()

	c = treeClient(t, &fakeTrees{readErr: fmt.Errorf("/root/d: no such directory: %w", errdefs.ErrNotFound)})
	if _, err := c.ReadTree(ctx, "vm", "/root/d"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if _, err := c.ReadTree(ctx, "vm", ""); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("no path: %v", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("the guest's walk failed") }

// endlessReader is a body that never ends.
type endlessReader struct{}

func (endlessReader) Read(p []byte) (int, error) { return len(p), nil }

// TestWriteTreeRoute: the result comes back as JSON; a guest that fails
// early (a full filesystem) is answered at once, the body not read on.
func TestWriteTreeRoute(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := treeClient(t, &fakeTrees{})
	res, err := c.WriteTree(ctx, "vm", "/root", "proj", strings.NewReader("archive"))
	if err != nil || res.Path != "/root/proj" || res.Files != 1 || res.Bytes != 7 {
		t.Fatalf("%+v %v", res, err)
	}
	c = treeClient(t, &fakeTrees{writeErr: fmt.Errorf("/root: the filesystem is full: %w", errdefs.ErrNoSpace)})
	if _, err := c.WriteTree(ctx, "vm", "/root", "proj", endlessReader{}); !errors.Is(err, errdefs.ErrNoSpace) {
		t.Fatalf("full: %v", err)
	}
}
