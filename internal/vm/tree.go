package vm

import (
	"context"
	"fmt"
	"io"

	"vers/internal/agent"
)

// ReadTree streams the directory path in the running VM ref as a tar
// archive; the reader is bound to ctx and fails, never ends, when the
// transfer is cut or the guest's walk fails.
func (m *Manager) ReadTree(ctx context.Context, ref, path string) (io.ReadCloser, error) {
	c, row, mc, err := m.session(ctx, ref)
	if err != nil {
		return nil, err
	}
	rc, err := c.ReadTree(ctx, path)
	if err != nil {
		return nil, m.agentErr(row, mc, c, fmt.Errorf("%s: %w", path, err))
	}
	return rc, nil
}

// WriteTree extracts the tar archive r into the running VM ref: into
// path/name when path is a directory there, as path otherwise. A failure
// keeps the whole files written before it.
func (m *Manager) WriteTree(ctx context.Context, ref, path, name string, r io.Reader) (agent.TreeResult, error) {
	c, row, mc, err := m.session(ctx, ref)
	if err != nil {
		return agent.TreeResult{}, err
	}
	res, err := c.WriteTree(ctx, path, name, r)
	if err != nil {
		return res, m.agentErr(row, mc, c, err)
	}
	return res, nil
}
