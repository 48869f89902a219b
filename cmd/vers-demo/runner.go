package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

var errVers = errors.New("vers failed")

// runner runs the vers CLI in the demo's project directory and remembers
// every VM alias it asked for, so that cleanup can find them all.
type runner struct {
	bin string
	dir string
	out io.Writer

	mu      sync.Mutex
	made    []string // aliases of VMs this demo created (roots first)
	commits []string // tags of commits this demo made and has not removed
}

// trackCommit records a tag before the commit that makes it; cleanup
// removes the commit.
func (r *runner) trackCommit(tag string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commits = append(r.commits, tag)
}

// forgetCommit: the demo removed that commit itself.
func (r *runner) forgetCommit(tag string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commits = slices.DeleteFunc(r.commits, func(t string) bool { return t == tag })
}

// vers runs one command with stdin and returns its stdout; a non-zero exit
// is an error carrying stderr.
func (r *runner) vers(ctx context.Context, stdin string, args ...string) (string, time.Duration, error) {
	cmd := exec.CommandContext(ctx, r.bin, args...)
	cmd.Dir = r.dir
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return out.String(), d, fmt.Errorf("vers %s: %w: %s: %w", strings.Join(args, " "), err, strings.TrimSpace(errb.String()), errVers)
	}
	return out.String(), d, nil
}

// made records an alias before the command that creates it runs: an
// interrupted `vers run` or `vers branch` may still complete in the daemon.
func (r *runner) track(alias string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.made = append(r.made, alias)
}

// removeCommits removes the commits this demo made and did not remove.
func (r *runner) removeCommits(ctx context.Context) {
	r.mu.Lock()
	tags := slices.Clone(r.commits)
	r.mu.Unlock()
	for _, t := range tags {
		if _, _, err := r.vers(ctx, "", "commit", "rm", t); err == nil {
			fmt.Fprintf(r.out, "cleanup: removed commit %s\n", t)
		}
	}
}

type vmInfo struct {
	ID    string `json:"id"`
	Alias string `json:"alias"`
	State string `json:"state"`
}

func (r *runner) status(ctx context.Context) ([]vmInfo, error) {
	out, _, err := r.vers(ctx, "", "status", "--format", "json")
	if err != nil {
		return nil, err
	}
	var vms []vmInfo
	if err := json.Unmarshal([]byte(out), &vms); err != nil {
		return nil, fmt.Errorf("status json: %w", err)
	}
	return vms, nil
}

// cleanup kills, with their descendants, every VM this demo created that
// still exists. It runs with its own deadline, after an interrupt too.
func (r *runner) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r.removeCommits(ctx)
	r.mu.Lock()
	mine := map[string]bool{}
	for _, a := range r.made {
		mine[a] = true
	}
	r.mu.Unlock()
	if len(mine) == 0 {
		return
	}
	// A VM whose create was interrupted can take a moment to appear.
	time.Sleep(500 * time.Millisecond)
	vms, err := r.status(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vers-demo: cleanup:", err)
		return
	}
	killed := false
	for _, v := range vms {
		if !mine[v.Alias] {
			continue
		}
		// An earlier kill -r may have taken it with its parent already.
		if _, _, err := r.vers(ctx, "", "kill", v.ID, "-r"); err == nil {
			killed = true
			fmt.Fprintf(r.out, "cleanup: killed %s and its descendants\n", v.Alias)
		}
	}
	if !killed {
		return
	}
	if left, err := r.status(ctx); err == nil {
		for _, v := range left {
			if mine[v.Alias] {
				fmt.Fprintf(os.Stderr, "vers-demo: cleanup: %s is still there; run `vers kill %s -r`\n", v.Alias, v.Alias)
			}
		}
	}
}
