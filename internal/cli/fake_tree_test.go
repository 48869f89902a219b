package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"

	"vers/api"
	"vers/internal/agent"
	"vers/internal/errdefs"
)

// treeState is the fake's guest for vers cp -r: a real agent server,
// in-process, whose filesystem is this machine's (tests give it paths in
// their temporary directories), or a hostile guest that answers every
// ReadTree with a given archive.
type treeState struct {
	guest       *agent.Client
	hostileTree func() io.Reader
}

// withGuest gives the fake daemon a guest agent, served over a pipe until
// the test ends.
func (d *fakeDaemon) withGuest(t *testing.T) {
	t.Helper()
	host, guest := net.Pipe()
	srv := agent.NewServer(agent.ServerConfig{Logf: t.Logf})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.ServeConn(ctx, guest)
	}()
	c, err := agent.NewClient(host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		cancel()
		<-served
	})
	d.guest = c
}

func (d *fakeDaemon) ReadTree(ctx context.Context, ref, path string) (io.ReadCloser, error) {
	if err := d.refusePaused(ref); err != nil {
		return nil, err
	}
	if d.hostileTree != nil {
		return io.NopCloser(d.hostileTree()), nil
	}
	if d.guest == nil {
		return nil, fmt.Errorf("fake: no files: %w", errdefs.ErrUnavailable)
	}
	return d.guest.ReadTree(ctx, path)
}

func (d *fakeDaemon) WriteTree(ctx context.Context, ref, path, name string, r io.Reader) (api.TreeResult, error) {
	if err := d.refusePaused(ref); err != nil {
		return api.TreeResult{}, err
	}
	if d.guest == nil {
		return api.TreeResult{}, fmt.Errorf("fake: no files: %w", errdefs.ErrUnavailable)
	}
	res, err := d.guest.WriteTree(ctx, path, name, r)
	return api.TreeResult{Path: res.Path, Files: res.Files, Dirs: res.Dirs, Symlinks: res.Symlinks,
		Bytes: res.Bytes, Skipped: res.Skipped, SkippedNames: res.SkippedNames}, err
}
