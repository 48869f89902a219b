package daemon

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"vers/api"
	"vers/internal/errdefs"
)

func TestValidateExec(t *testing.T) {
	tests := []struct {
		req  api.ExecRequest
		want string // "" when valid
	}{
		{api.ExecRequest{Command: "true"}, ""},
		{api.ExecRequest{TTY: true}, ""},
		{api.ExecRequest{Command: "env", Env: []string{"A=", "B=x=y"}}, ""},
		{api.ExecRequest{}, "nothing to run"},
		{api.ExecRequest{Command: "true", TimeoutMS: -1}, "negative"},
		{api.ExecRequest{Command: "true", Env: []string{"NOEQUALS"}}, `"NOEQUALS": write it KEY=VALUE`},
		{api.ExecRequest{Command: "true", Env: []string{"=1"}}, "KEY=VALUE"},
	}
	for _, tt := range tests {
		err := validateExec(tt.req)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tt.req, err)
			}
			continue
		}
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want invalid with %q", tt.req, err, tt.want)
		}
	}
}

func TestQueryBool(t *testing.T) {
	for q, want := range map[string]bool{"": false, "?recursive=true": true, "?recursive=1": true, "?recursive=false": false} {
		got, err := queryBool(httptest.NewRequest("DELETE", "/v1/vms/x"+q, nil), "recursive")
		if err != nil || got != want {
			t.Errorf("%q: %v %v", q, got, err)
		}
	}
	if _, err := queryBool(httptest.NewRequest("DELETE", "/v1/vms/x?recursive=yes", nil), "recursive"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("recursive=yes: %v, want invalid", err)
	}
}
