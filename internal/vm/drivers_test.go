package vm

import (
	"os"
	"testing"

	"vers/internal/qemu"
)

// TestRotateLogs: the watch's one call bounds both logs a guest can fill,
// the console's and passt's.
func TestRotateLogs(t *testing.T) {
	cfg := qemu.Config{Name: "vm1", Dir: t.TempDir()}
	big := make([]byte, qemu.ConsoleCap+1)
	for _, p := range []string{cfg.SerialLog(), cfg.PasstLog()} {
		if err := os.WriteFile(p, big, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := (QEMU{}).RotateLogs(cfg); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{cfg.SerialLog(), cfg.PasstLog()} {
		if b, err := os.ReadFile(p); err != nil || len(b) != 0 {
			t.Errorf("%s after the rotation: %d bytes, %v", p, len(b), err)
		}
	}
	if b, err := os.ReadFile(cfg.PasstLog() + ".1"); err != nil || len(b) != len(big) {
		t.Errorf("passt's previous part: %d bytes, %v", len(b), err)
	}
}

// TestRotateLogsConsoleFails: a console log that cannot be rotated is an
// error, and passt's is rotated all the same.
func TestRotateLogsConsoleFails(t *testing.T) {
	cfg := qemu.Config{Name: "vm1", Dir: t.TempDir()}
	if err := os.Mkdir(cfg.SerialLog(), 0o700); err != nil { // a directory: not openable for writing
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.PasstLog(), make([]byte, qemu.PasstLogCap+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (QEMU{}).RotateLogs(cfg); err == nil {
		t.Error("no error for a console log that cannot be opened")
	}
	if b, err := os.ReadFile(cfg.PasstLog()); err != nil || len(b) != 0 {
		t.Errorf("passt's log after the rotation: %d bytes, %v", len(b), err)
	}
}
