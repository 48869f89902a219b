package qemu

import (
	"context"
	"fmt"
	"time"
)

// Typed QMP operations the domain composes into a branch. Each is one small
// step on one QEMU; internal/vm owns the order, the timing and the undo.

// RAMMode says what the next outgoing migration carries.
type RAMMode int

const (
	// RAMFull streams all of RAM.
	RAMFull RAMMode = iota
	// RAMBackground streams RAM as it was when the guest stopped, through a
	// background snapshot: QEMU write-protects guest RAM and resumes the
	// guest itself, copying out each page before the guest writes it.
	RAMBackground
)

// Migration tuning: no bandwidth cap (the default is 32 MiB/s).
var migrationParams = map[string]any{"max-bandwidth": int64(64) << 30}

// SetRAMMode sets the migration capabilities for mode, and lifts the
// bandwidth cap.
func (i *Instance) SetRAMMode(ctx context.Context, mode RAMMode) error {
	caps := map[string]bool{"background-snapshot": mode == RAMBackground}
	return i.SetMigration(ctx, caps, migrationParams)
}

// Pause stops the guest's vCPUs (QMP stop); the process stays.
func (i *Instance) Pause(ctx context.Context) error {
	if err := i.Execute(ctx, "stop", nil, nil); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	return nil
}

// Cont runs a paused guest again.
func (i *Instance) Cont(ctx context.Context) error {
	if err := i.Execute(ctx, "cont", nil, nil); err != nil {
		return fmt.Errorf("cont: %w", err)
	}
	return nil
}

// ListenRAM makes a VM started with Incoming wait for a migration on uri
// (e.g. "unix:/path").
func (i *Instance) ListenRAM(ctx context.Context, uri string) error {
	if err := i.Execute(ctx, "migrate-incoming", map[string]string{"uri": uri}, nil); err != nil {
		return fmt.Errorf("migrate-incoming: %w", err)
	}
	return nil
}

// SendRAM starts a migration to uri in the mode set by SetRAMMode.
func (i *Instance) SendRAM(ctx context.Context, uri string) error {
	if err := i.Execute(ctx, "migrate", map[string]string{"uri": uri}, nil); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// WaitRAMSent waits until the outgoing migration has completed.
func (i *Instance) WaitRAMSent(ctx context.Context) (Migration, error) {
	return i.WaitMigration(ctx, 2*time.Millisecond, func(s string) bool { return s == "completed" })
}

// CancelMigration cancels an outgoing migration, if one runs.
func (i *Instance) CancelMigration(ctx context.Context) {
	i.Execute(ctx, "migrate_cancel", nil, nil)
}

// WaitRunning waits until the guest runs (a background snapshot resumes it
// itself once its RAM is write-protected).
func (i *Instance) WaitRunning(ctx context.Context) error {
	_, err := i.WaitStatus(ctx, 500*time.Microsecond, "running")
	return err
}

// WaitLoaded waits until an incoming migration has finished loading.
func (i *Instance) WaitLoaded(ctx context.Context) error {
	_, err := i.WaitStatus(ctx, time.Millisecond, "paused", "postmigrate")
	return err
}
