package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startListening starts versd with --listen on a free loopback port, in
// home, and returns the API's URL once it serves.
func startListening(t *testing.T, home string, env []string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(filepath.Join(binDir, "versd"), "--listen", addr)
	cmd.Env = append(append(os.Environ(), env...), "VERS_READY_FD=3")
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(r).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("versd --listen %s did not start: %q", addr, line)
	}
	return "http://" + addr
}

// TestVersdListen: versd --listen serves the API over TCP only to requests
// with the token of versd.token, and refuses the others with a bare 401;
// vers uses it through VERS_URL and VERS_TOKEN. No VM is booted.
func TestVersdListen(t *testing.T) {
	home := shortHome(t)
	env := daemonEnv(t, home)
	url := startListening(t, home, env)
	tokenFile := filepath.Join(home, "versd.token")
	st, err := os.Stat(tokenFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, %v", st, err)
	}
	b, _ := os.ReadFile(tokenFile)
	token := strings.TrimSpace(string(b))

	for _, tt := range []struct {
		name, path, auth string
		want             int
	}{
		{"no token", "/v1/health", "", http.StatusUnauthorized},
		{"no token, no route", "/v1/nothing", "", http.StatusUnauthorized},
		{"wrong token", "/v1/health", "Bearer " + strings.Repeat("0", len(token)), http.StatusUnauthorized},
		{"token in the wrong scheme", "/v1/health", "Basic " + token, http.StatusUnauthorized},
		{"right token", "/v1/health", "Bearer " + token, http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, url+tt.path, nil)
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: %d %q, want %d", tt.name, resp.StatusCode, body, tt.want)
		}
		if tt.want == http.StatusUnauthorized && (len(body) != 0 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer")) {
			t.Errorf("%s: a refusal says more than 401: %q %v", tt.name, body, resp.Header)
		}
	}

	// The CLI of another home (so it could not use the socket) with the URL.
	remote := []string{"VERS_HOME=" + t.TempDir(), "VERS_URL=" + url}
	if r := versAt(t, binDir, append(remote, "VERS_TOKEN="+token), "status", "--format", "json"); r.code != 0 || strings.TrimSpace(r.out) != "[]" {
		t.Fatalf("vers status over TCP: exit %d, out %q, err %q", r.code, r.out, r.err)
	}
	if r := versAt(t, binDir, append(remote, "VERS_TOKEN=wrong"), "status"); r.code != 1 || !strings.Contains(r.err, "set VERS_TOKEN") {
		t.Fatalf("vers status with a wrong token: exit %d, err %q", r.code, r.err)
	}
	if log, _ := os.ReadFile(filepath.Join(home, "versd.log")); strings.Contains(string(log), token) {
		t.Fatal("versd.log holds the token")
	}
}

// TestVersdListenDownStartsNothing: with VERS_URL at nothing, vers says
// so and starts no daemon, neither there nor for its own home.
func TestVersdListenDownStartsNothing(t *testing.T) {
	home := shortHome(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	start := time.Now()
	r := versAt(t, binDir, append(daemonEnv(t, home), "VERS_URL="+url, "VERS_TOKEN=x"), "status")
	if r.code != 1 || !strings.Contains(r.err, "nothing answers there") {
		t.Fatalf("exit %d, err %q", r.code, r.err)
	}
	if _, err := os.Stat(filepath.Join(home, "versd.pid")); err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("a daemon was started (or looked for slowly: %s)", time.Since(start))
	}
}

// TestVersdRestartKeepsListen: a versd that a command of a new build
// replaces is followed by one that listens where it did, on the same token.
func TestVersdRestartKeepsListen(t *testing.T) {
	home := shortHome(t)
	env := daemonEnv(t, home)
	url := startListening(t, home, env)
	b, _ := os.ReadFile(filepath.Join(home, "versd.token"))
	token := strings.TrimSpace(string(b))
	newBin := t.TempDir()
	for _, name := range []string{"vers", "versd", "vers-agent"} {
		copyFile(t, filepath.Join(binDir, name), filepath.Join(newBin, name))
	}
	if r := versAt(t, newBin, env, "status"); r.code != 0 || !strings.Contains(r.err, "restarting it") {
		t.Fatalf("new build's status: exit %d: %s", r.code, r.err)
	}
	if r := versAt(t, newBin, []string{"VERS_HOME=" + t.TempDir(), "VERS_URL=" + url, "VERS_TOKEN=" + token}, "status"); r.code != 0 {
		t.Fatalf("status over TCP after the restart: exit %d: %s", r.code, r.err)
	}
}
