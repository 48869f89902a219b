package vm

import (
	"errors"
	"strings"
	"testing"

	"vers/api"
	"vers/internal/errdefs"
)

func TestDiffScope(t *testing.T) {
	tests := []struct {
		req            api.FSDiffRequest
		roots, exclude string
	}{
		{api.FSDiffRequest{}, "/", "/proc /sys /dev /run /tmp"},
		{api.FSDiffRequest{Paths: []string{"/app/", "/etc"}, Exclude: []string{"/app/cache"}}, "/app /etc", "/proc /sys /dev /run /tmp /app/cache"},
		{api.FSDiffRequest{Include: []string{"/tmp"}}, "/", "/proc /sys /dev /run"},
		{api.FSDiffRequest{Include: []string{"/tmp/keep"}}, "/ /tmp/keep", "/proc /sys /dev /run /tmp"},
		{api.FSDiffRequest{Paths: []string{"/app"}, Include: []string{"/tmp/keep"}}, "/app", "/proc /sys /dev /run /tmp"},
	}
	for _, tt := range tests {
		roots, exclude, err := diffScope(tt.req)
		if err != nil || strings.Join(roots, " ") != tt.roots || strings.Join(exclude, " ") != tt.exclude {
			t.Errorf("%+v: roots %q exclude %q (%v); want %q, %q", tt.req, roots, exclude, err, tt.roots, tt.exclude)
		}
	}
	for _, req := range []api.FSDiffRequest{{Paths: []string{"app"}}, {Exclude: []string{"x"}}, {Include: []string{"./y"}}} {
		if _, _, err := diffScope(req); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%+v: %v", req, err)
		}
	}
}
