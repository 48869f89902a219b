package qemu

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"
)

func consoleConfig(t *testing.T) Config {
	t.Helper()
	return Config{Name: "vm1", Dir: t.TempDir()}
}

func TestRotateConsole(t *testing.T) {
	cfg := consoleConfig(t)
	if rotated, err := RotateConsole(cfg, 100); rotated || err != nil {
		t.Fatalf("no log yet: %v %v", rotated, err)
	}
	// Opened as QEMU opens it (append=on), before the rotation.
	w, err := os.OpenFile(cfg.SerialLog(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	first := strings.Repeat("boot line\n", 10) // 100 bytes
	w.WriteString(first)
	if rotated, err := RotateConsole(cfg, 100); rotated || err != nil {
		t.Fatalf("at the cap: %v %v", rotated, err)
	}
	w.WriteString("one more\n")
	if rotated, err := RotateConsole(cfg, 100); !rotated || err != nil {
		t.Fatalf("past the cap: %v %v", rotated, err)
	}
	if b, _ := os.ReadFile(cfg.OldSerialLog()); string(b) != first+"one more\n" {
		t.Fatalf("previous part: %q", b)
	}
	// The writer carries on at the new end, not at its old offset.
	w.WriteString("after\n")
	if b, _ := os.ReadFile(cfg.SerialLog()); string(b) != "after\n" {
		t.Fatalf("after the rotation the log holds %q", b)
	}
	if log, _ := cfg.ConsoleLog(); string(log) != first+"one more\nafter\n" {
		t.Fatalf("whole log: %q", log)
	}
	if tail := cfg.ConsoleTail(15); tail != "one more\nafter" {
		t.Fatalf("tail across the rotation: %q", tail)
	}
	if tail := cfg.ConsoleTail(3); tail != "er" {
		t.Fatalf("short tail: %q", tail)
	}
	if _, err := os.Stat(cfg.OldSerialLog() + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left: %v", err)
	}
}

// TestRotateConsoleWhileWriting: a writer that never stops, rotated over and
// over, leaves two files of whole lines with no holes, each bounded.
func TestRotateConsoleWhileWriting(t *testing.T) {
	cfg := consoleConfig(t)
	w, err := os.OpenFile(cfg.SerialLog(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const line = "0123456789abcdef\n"
	const max = 4 << 10
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := w.WriteString(line); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	rotations := 0
	for rotations < 50 {
		rotated, err := RotateConsole(cfg, max)
		if err != nil {
			t.Fatal(err)
		}
		if rotated {
			rotations++
		}
	}
	close(stop)
	wg.Wait()
	for _, p := range []string{cfg.SerialLog(), cfg.OldSerialLog()} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.IndexByte(b, 0) >= 0 {
			t.Fatalf("%s has a hole: the writer wrote at its old offset", p)
		}
		if strings.ReplaceAll(string(b), line, "") != "" {
			t.Fatalf("%s holds more than whole lines", p)
		}
	}
	// The log only grows by what was written since the last check.
	if _, err := RotateConsole(cfg, max); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(cfg.SerialLog()); fi.Size() > max {
		t.Fatalf("log of %d bytes after a check, cap %d", fi.Size(), max)
	}
}

func TestConsoleEnd(t *testing.T) {
	cfg := consoleConfig(t)
	if b, err := cfg.ConsoleEnd(10); err != nil || len(b) != 0 {
		t.Fatalf("no log yet: %q %v", b, err)
	}
	os.WriteFile(cfg.OldSerialLog(), []byte("old part\n"), 0o600)
	os.WriteFile(cfg.SerialLog(), []byte("  new part\n"), 0o600)
	for n, want := range map[int64]string{5: "part\n", 11: "  new part\n", 14: "rt\n  new part\n", 100: "old part\n  new part\n"} {
		if b, err := cfg.ConsoleEnd(n); err != nil || string(b) != want {
			t.Errorf("last %d bytes: %q %v, want %q", n, b, err, want)
		}
	}
}

// TestRotatePasstLog: passt's log, written through the O_APPEND descriptor
// startPasst gives it, is rotated the same way.
func TestRotatePasstLog(t *testing.T) {
	cfg := consoleConfig(t)
	w, err := os.OpenFile(cfg.PasstLog(), os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.WriteString(strings.Repeat("warning\n", 20))
	if rotated, err := RotatePasstLog(cfg, 100); !rotated || err != nil {
		t.Fatalf("past the cap: %v %v", rotated, err)
	}
	w.WriteString("next\n")
	if b, _ := os.ReadFile(cfg.PasstLog()); string(b) != "next\n" {
		t.Fatalf("after the rotation the log holds %q", b)
	}
	if b, _ := os.ReadFile(cfg.PasstLog() + ".1"); len(b) != 160 {
		t.Fatalf("previous part: %d bytes, want 160", len(b))
	}
	if tail := fileTail(cfg.PasstLog(), 1024); tail != "next" {
		t.Fatalf("tail: %q", tail)
	}
}
