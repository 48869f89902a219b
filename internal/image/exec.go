package image

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// run executes a host command with its output in the build log. The command
// runs in its own process group so that cancelling kills its children too
// (debootstrap runs dpkg in a chroot). On failure the error names the log
// and quotes its last lines. onLine, if set, sees every output line.
func (b *build) run(ctx context.Context, onLine func(string), tool, pkg string, args ...string) error {
	return b.command(ctx, "", onLine, tool, pkg, args...)
}

// runIn is run in the working directory dir.
func (b *build) runIn(ctx context.Context, dir, tool, pkg string, args ...string) error {
	return b.command(ctx, dir, nil, tool, pkg, args...)
}

func (b *build) command(ctx context.Context, dir string, onLine func(string), tool, pkg string, args ...string) error {
	bin, err := lookTool(tool, pkg)
	if err != nil {
		return err
	}
	fmt.Fprintf(b.log, "$ %s %s\n", tool, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = toolEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var w io.Writer = b.log
	var lw *lineWriter
	if onLine != nil {
		lw = &lineWriter{w: b.log, fn: onLine}
		w = lw
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Run()
	if lw != nil {
		lw.flush()
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.log.Sync()
		return fmt.Errorf("%s failed: %v; see %s, which ends with:\n%s", tool, err, b.logPath, tailFile(b.logPath, 15))
	}
	return nil
}

// output runs a short host command and returns its stdout.
func (b *build) output(ctx context.Context, tool, pkg string, args ...string) ([]byte, error) {
	bin, err := lookTool(tool, pkg)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(b.log, "$ %s %s\n", tool, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = toolEnv()
	var stderr bytes.Buffer
	cmd.Stderr = io.MultiWriter(b.log, &stderr)
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s failed: %v: %s", tool, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

type lineWriter struct {
	w   io.Writer
	fn  func(string)
	buf []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.fn(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return l.w.Write(p)
}

func (l *lineWriter) flush() {
	if len(l.buf) > 0 {
		l.fn(string(l.buf))
		l.buf = nil
	}
}

var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// lookTool finds a host command, also in the sbin directories that a
// non-login PATH often lacks, and says which apt package provides it.
func lookTool(tool, pkg string) (string, error) {
	if p, err := exec.LookPath(tool); err == nil {
		return p, nil
	}
	for _, d := range append(sbinDirs, "/usr/bin", "/bin") {
		p := filepath.Join(d, tool)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &missingToolError{tool: tool, pkg: pkg}
}

func toolEnv() []string {
	env := []string{"LC_ALL=C", "DEBIAN_FRONTEND=noninteractive"}
	path := os.Getenv("PATH")
	for _, d := range sbinDirs {
		if !strings.Contains(":"+path+":", ":"+d+":") {
			path += ":" + d
		}
	}
	env = append(env, "PATH="+strings.TrimPrefix(path, ":"))
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "PATH" && k != "LC_ALL" && k != "LANG" && k != "LANGUAGE" {
			env = append(env, kv)
		}
	}
	return env
}

// tailFile returns the last n lines of a file, indented.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "  (log unreadable: " + err.Error() + ")"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	for i := range lines {
		lines[i] = "  " + lines[i]
	}
	return strings.Join(lines, "\n")
}
