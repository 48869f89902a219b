package cli

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"vers/api"
)

func TestUI(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		args      []string
		openErr   error
		wantOpen  bool
		wantInErr string
	}{
		{name: "no display", args: []string{"ui"}},
		{name: "X display", env: map[string]string{"DISPLAY": ":0"}, args: []string{"ui"}, wantOpen: true, wantInErr: "Opened it"},
		{name: "Wayland", env: map[string]string{"WAYLAND_DISPLAY": "wayland-0"}, args: []string{"ui"}, wantOpen: true},
		{name: "--no-browser", env: map[string]string{"DISPLAY": ":0"}, args: []string{"ui", "--no-browser"}},
		{name: "no browser there", env: map[string]string{"DISPLAY": ":0"}, args: []string{"ui"}, openErr: errors.New("xdg-open: not found"),
			wantOpen: true, wantInErr: "open the URL yourself"},
	}
	for _, tt := range tests {
		e := newEnv(t)
		var opened []string
		cmd := NewCmdUI(e.f, func(ctx context.Context, o *UIOptions) error {
			o.Getenv = func(k string) string { return tt.env[k] }
			o.Open = func(url string) error { opened = append(opened, url); return tt.openErr }
			return runUI(ctx, o)
		})
		cmd.SetArgs(tt.args[1:])
		if err := cmd.Execute(); err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		url := strings.TrimSpace(e.out.String())
		if url != "http://127.0.0.1:4242/ui/login?t=token1" {
			t.Errorf("%s: printed %q, want the login URL alone", tt.name, url)
		}
		if got := len(opened) == 1 && opened[0] == url; got != tt.wantOpen || len(opened) > 1 {
			t.Errorf("%s: opened %v, want opened %v", tt.name, opened, tt.wantOpen)
		}
		if !strings.Contains(e.errOut.String(), tt.wantInErr) || !strings.Contains(e.errOut.String(), "once, within 2m0s") {
			t.Errorf("%s: stderr %q, want %q and the expiry", tt.name, e.errOut, tt.wantInErr)
		}
	}
}

func TestUIJSON(t *testing.T) {
	e := newEnv(t)
	if code := e.run("ui", "--format", "json", "--no-browser"); code != ExitOK {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	var l api.UILogin
	if err := json.Unmarshal(e.out.Bytes(), &l); err != nil || l.Addr != "127.0.0.1:4242" || !strings.HasSuffix(l.URL, "t=token1") || l.ExpiresAt.IsZero() {
		t.Fatalf("json %s (%v): want the login", e.out, err)
	}
	if code := e.run("ui", "extra"); code != ExitUsage {
		t.Errorf("vers ui extra: exit %d, want %d", code, ExitUsage)
	}
	if code := e.run("ui", "--format", "yaml"); code != ExitUsage {
		t.Errorf("vers ui --format yaml: exit %d, want %d", code, ExitUsage)
	}
}
