package cli

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"vers/api"
	"vers/internal/paths"
)

// remoteEnv is an env whose daemon is VERS_URL's, with a home of its own
// where the CLI must start nothing.
func remoteEnv(t *testing.T, url, token string) (*env, string) {
	t.Helper()
	e := newEnv(t)
	home := t.TempDir()
	e.f.client, e.f.Layout, e.f.URL, e.f.Token = nil, paths.Layout{Home: home}, url, token
	return e, home
}

func TestRemoteStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/v1/vms" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode([]api.VM{{ID: headID, Alias: "far-vm", State: api.StateRunning}})
	}))
	defer srv.Close()
	e, _ := remoteEnv(t, srv.URL, "secret")
	if code := e.run("status"); code != 0 || !strings.Contains(e.out.String(), "far-vm") {
		t.Fatalf("status: exit %d, out %q, err %q", code, e.out, e.errOut)
	}
	e, _ = remoteEnv(t, srv.URL, "wrong")
	if code := e.run("status"); code != ExitError || !strings.Contains(e.errOut.String(), "set VERS_TOKEN") {
		t.Fatalf("wrong token: exit %d, err %q", code, e.errOut)
	}
}

// TestRemoteDownStartsNothing: with VERS_URL, a versd that does not
// answer is an error that says so; no daemon is started here.
func TestRemoteDownStartsNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	e, home := remoteEnv(t, url, "secret")
	if code := e.run("status"); code != ExitError || !strings.Contains(e.errOut.String(), "nothing answers there") || !strings.Contains(e.errOut.String(), url) {
		t.Fatalf("status: exit %d, err %q", code, e.errOut)
	}
	if entries, _ := os.ReadDir(home); len(entries) != 0 {
		t.Fatalf("the CLI touched this host's home: %v", entries)
	}
	e, _ = remoteEnv(t, "127.0.0.1:7777", "")
	if code := e.run("status"); code != ExitInvalid || !strings.Contains(e.errOut.String(), "VERS_URL") {
		t.Fatalf("bad VERS_URL: exit %d, err %q", code, e.errOut)
	}
}
