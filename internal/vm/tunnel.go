package vm

import (
	"context"
	"fmt"

	"vers/internal/agent"
)

// DialTCP connects, from inside the running VM ref, to addr (HOST:PORT as
// the guest reaches it) over the VM's agent session: the connection of one
// tunnelled client. It is bound to ctx: when ctx ends, it is reset.
func (m *Manager) DialTCP(ctx context.Context, ref, addr string) (*agent.Conn, error) {
	c, row, mc, err := m.session(ctx, ref)
	if err != nil {
		return nil, err
	}
	conn, err := c.DialTCP(ctx, addr)
	if err != nil {
		return nil, m.agentErr(row, mc, c, fmt.Errorf("vm %s: %w", label(row), err))
	}
	context.AfterFunc(ctx, func() { conn.Close() })
	return conn, nil
}
