package vm

import (
	"context"

	"vers/api"
	"vers/internal/store"
)

// The domain announces each change once it is recorded: the store is the
// truth, an event says what changed in it. A VM event carries the VM as
// toAPI shows it after the change.

func (m *Manager) publish(e api.Event) {
	if m.cfg.Events != nil {
		m.cfg.Events.Publish(e)
	}
}

// publishVM announces a change of row (created, state) with reason.
func (m *Manager) publishVM(typ string, row store.VM, reason string) {
	v := m.toAPI(row)
	m.publish(api.Event{Type: typ, VMID: v.ID, Alias: v.Alias, VM: &v, Reason: reason})
}

// publishState announces VM id's state as the store has it now.
func (m *Manager) publishState(ctx context.Context, id, reason string) {
	row, err := m.store.GetVM(context.WithoutCancel(ctx), id)
	if err != nil {
		return
	}
	m.publishVM(api.EventVMState, row, reason)
}

func (m *Manager) publishBranch(res BranchResult) {
	p := res.Parent
	m.publish(api.Event{
		Type: api.EventVMBranched, VMID: p.ID, Alias: p.Alias, VM: &p, Children: res.Children,
		SnapshotID: res.SnapshotID, PauseMillis: float64(res.Pause.Microseconds()) / 1000,
	})
}

func (m *Manager) publishKilled(row store.VM) {
	m.publish(api.Event{Type: api.EventVMKilled, VMID: row.ID, Alias: row.Alias})
}

func (m *Manager) publishCommits(typ string, ids []string) {
	for _, id := range ids {
		m.publish(api.Event{Type: typ, Commit: id})
	}
}
