package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"vers/internal/agent"
	"vers/internal/errdefs"
	"vers/internal/store"
)

// Exec, files: the domain owns each VM's one session with its guest agent.
// A call that fails because the session itself ended drops it, and the
// next call dials again; any other failure (a bad request, a missing file)
// leaves it, and the other commands on it, alone.

// Exec starts req in the running VM ref. The process belongs to ctx: when
// ctx ends (the client went away), it is killed in the guest.
func (m *Manager) Exec(ctx context.Context, ref string, req agent.ExecRequest) (*agent.Process, error) {
	c, row, mc, err := m.session(ctx, ref)
	if err != nil {
		return nil, err
	}
	req.FixedLayout = m.cfg.FixedLayout
	p, err := c.Start(ctx, req)
	if err != nil {
		return nil, m.agentErr(row, mc, c, err)
	}
	context.AfterFunc(ctx, func() { p.Close() })
	return p, nil
}

// ReadFile opens path in the running VM ref; the reader is bound to ctx.
func (m *Manager) ReadFile(ctx context.Context, ref, path string) (io.ReadCloser, agent.FileInfo, error) {
	c, row, mc, err := m.session(ctx, ref)
	if err != nil {
		return nil, agent.FileInfo{}, err
	}
	rc, info, err := c.ReadFile(ctx, path)
	if err != nil {
		return nil, info, m.agentErr(row, mc, c, fmt.Errorf("%s: %w", path, err))
	}
	return rc, info, nil
}

// WriteFile writes r to path in the running VM ref, atomically.
func (m *Manager) WriteFile(ctx context.Context, ref, path string, mode os.FileMode, r io.Reader) error {
	c, row, mc, err := m.session(ctx, ref)
	if err != nil {
		return err
	}
	if err := c.WriteFile(ctx, path, mode, r); err != nil {
		return m.agentErr(row, mc, c, err)
	}
	return nil
}

// session returns the agent session of the running VM ref, dialling it if
// there is none: one caller at a time dials, the others use its session.
func (m *Manager) session(ctx context.Context, ref string) (*agent.Client, store.VM, *machine, error) {
	row, err := m.store.ResolveVM(ctx, ref)
	if err != nil {
		return nil, row, nil, err
	}
	mc, err := m.usable(ctx, row)
	if err != nil {
		return nil, row, nil, err
	}
	if c := mc.currentAgent(); c != nil {
		return c, row, mc, nil
	}
	mc.dialMu.Lock()
	defer mc.dialMu.Unlock()
	if c := mc.currentAgent(); c != nil {
		return c, row, mc, nil
	}
	if err := m.connect(ctx, mc, row, agentDialTimeout, false); err != nil {
		if mc.inst.Exited() {
			m.markDead(context.WithoutCancel(ctx), row, reasonExited)
			return nil, row, nil, fmt.Errorf("vm %s has stopped; `vers kill %s` removes it: %w", label(row), label(row), errdefs.ErrConflict)
		}
		return nil, row, nil, err
	}
	return mc.currentAgent(), row, mc, nil
}

// agentErr is the one place an agent error becomes an error kind. Only a
// session that ended is dropped.
func (m *Manager) agentErr(row store.VM, mc *machine, c *agent.Client, err error) error {
	switch {
	case errors.Is(err, agent.ErrClosed):
		mc.dropAgent(c)
		return fmt.Errorf("vm %s: the guest agent's session ended; try again: %w", label(row), err)
	case errors.Is(err, agent.ErrInvalid):
		return fmt.Errorf("%s: %w", trimKind(err, agent.ErrInvalid), errdefs.ErrInvalid)
	case errors.Is(err, agent.ErrNotFound):
		return fmt.Errorf("vm %s: %s: %w", label(row), trimKind(err, agent.ErrNotFound), errdefs.ErrNotFound)
	}
	return err
}

// trimKind is err's message without the kind it ends with.
func trimKind(err, kind error) string {
	return strings.TrimSuffix(err.Error(), ": "+kind.Error())
}
