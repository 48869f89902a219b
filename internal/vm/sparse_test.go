package vm

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestPunchZeroPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ram")
	data := make([]byte, 8<<20)
	// Non-zero pages at the start, in the middle and at the very end.
	for _, off := range []int{0, 5 * 4096, 3 << 20, len(data) - 1} {
		data[off] = 0xAB
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	freed, err := punchZeroPages(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(data) - 4*4096); freed != want {
		t.Fatalf("freed %d bytes, want %d", freed, want)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, data) {
		t.Fatal("contents changed")
	}
	var st syscall.Stat_t
	syscall.Stat(path, &st)
	// Filesystems that cannot punch holes fail above; where they can, the
	// allocation shrinks to about the four data pages.
	if alloc := st.Blocks * 512; alloc > 1<<20 {
		t.Fatalf("still %d bytes allocated", alloc)
	}
}
