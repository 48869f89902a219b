package vm

import (
	"errors"
	"testing"

	"vers/internal/errdefs"
)

func TestHostLimitsCheck(t *testing.T) {
	h := HostLimits{MemMiB: 4096, CPUs: 2, diskDir: t.TempDir()}
	tests := []struct {
		mem, cpu, fs int
		ok           bool
	}{
		{512, 1, 1024, true},
		{4096, 2, 1024, true},
		{0, 1, 1024, false},
		{-1, 1, 1024, false},
		{512, 0, 1024, false},
		{512, -2, 1024, false},
		{512, 1, 0, false},
		{512, 1, -5, false},
		{4097, 1, 1024, false},
		{512, 3, 1024, false},
		{512, 1, 1 << 40, false},
	}
	for _, tt := range tests {
		err := h.Check(tt.mem, tt.cpu, tt.fs)
		if tt.ok != (err == nil) {
			t.Errorf("Check(%d,%d,%d) = %v, want ok=%v", tt.mem, tt.cpu, tt.fs, err, tt.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Check(%d,%d,%d) error %v is not ErrInvalid", tt.mem, tt.cpu, tt.fs, err)
		}
	}
}

func TestValidateAlias(t *testing.T) {
	for _, ok := range []string{"", "db-root", "migration-premium", "a", "db", "c1", "bad", "1234", "A.b_c-1", "vm1", "cafe.1", "deadbeeg"} {
		if err := ValidateAlias(ok); err != nil {
			t.Errorf("ValidateAlias(%q) = %v", ok, err)
		}
	}
	// The last ones could be read as VM ids or id prefixes.
	for _, bad := range []string{"-x", "a b", "a/b", "ä", string(make([]byte, 70)), "deadbeef", "deadbeef-00", "12345678", "0e7f6c1a-9d2b-4c3e-8f10-2a3b4c5d6e7f"} {
		if err := ValidateAlias(bad); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("ValidateAlias(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}
