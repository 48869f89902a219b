package errdefs

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"vers/api"
)

func TestCodeRoundTrip(t *testing.T) {
	for _, code := range []string{api.CodeInvalid, api.CodeNotFound, api.CodeConflict, api.CodeTimeout, api.CodeUnavailable} {
		kind := FromCode(code)
		if kind == nil {
			t.Fatalf("FromCode(%q) = nil", code)
		}
		if got := Code(fmt.Errorf("wrapped: %w", kind)); got != code {
			t.Errorf("Code(FromCode(%q)) = %q", code, got)
		}
	}
	if FromCode(api.CodeInternal) != nil || FromCode("bogus") != nil {
		t.Error("internal and unknown codes must have no kind")
	}
	if got := Code(errors.New("boom")); got != api.CodeInternal {
		t.Errorf("plain error: %q", got)
	}
	if got := Code(fmt.Errorf("x: %w", context.DeadlineExceeded)); got != api.CodeTimeout {
		t.Errorf("deadline: %q", got)
	}
}

func TestMessageDropsKind(t *testing.T) {
	err := fmt.Errorf("vm x: %w", ErrNotFound)
	if got := Message(err); got != "vm x" {
		t.Errorf("Message = %q", got)
	}
}
