package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// defaultPath is PATH for every process: the guest's own environment (the
// kernel's, for PID 1) is no good to inherit.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

const defaultTerm = "xterm-256color"

// plan is what to execute for an ExecRequest, decided before anything runs.
type plan struct {
	Path string   // resolved program; empty if not found
	Argv []string // argv[0] as the user wrote it
	Env  []string
	Dir  string
	// Missing is set when the program cannot be found: the process "exits"
	// with 127 and this message on stderr, as a shell would do.
	Missing string
}

// lookFunc finds an executable named file in the directories of path.
type lookFunc func(file, path string) (string, bool)

// planExec decides program, arguments, environment and directory for x.
// home is the default directory and HOME. It fails only for requests that
// say nothing to run or are malformed.
func planExec(x ExecRequest, home string, look lookFunc) (plan, error) {
	env, err := buildEnv(x, home)
	if err != nil {
		return plan{}, err
	}
	p := plan{Env: env, Dir: x.Dir}
	if p.Dir == "" {
		p.Dir = home
	}
	pathEnv := envValue(env, "PATH")
	shell := func(args ...string) []string {
		if _, ok := look("bash", pathEnv); ok {
			return append([]string{"bash"}, args...)
		}
		return append([]string{"/bin/sh"}, args...)
	}
	switch {
	case x.Shell != "":
		p.Argv = shell("-c", x.Shell)
		// A command a shell would only split into words and run is run
		// directly: starting bash costs ~60 ms of a round trip on TCG.
		if argv, ok := plainCommand(x.Shell); ok {
			if _, found := look(argv[0], pathEnv); found {
				p.Argv = argv
			}
		}
	case len(x.Argv) > 0:
		if x.Argv[0] == "" {
			return plan{}, fmt.Errorf("empty program name: %w", ErrInvalid)
		}
		p.Argv = append([]string(nil), x.Argv...)
	case x.TTY && x.Login:
		p.Argv = shell("-l")
		p.Dir = home
	case x.TTY:
		p.Argv = shell()
	default:
		return plan{}, fmt.Errorf("nothing to run: give argv or a shell command: %w", ErrInvalid)
	}
	name := p.Argv[0]
	if strings.Contains(name, "/") {
		p.Path = name
		return p, nil
	}
	if path, ok := look(name, pathEnv); ok {
		p.Path = path
		return p, nil
	}
	p.Missing = name + ": command not found"
	return p, nil
}

// buildEnv lays x.Env over a default environment; a later KEY replaces an
// earlier one in place.
func buildEnv(x ExecRequest, home string) ([]string, error) {
	env := []string{
		"PATH=" + defaultPath,
		"HOME=" + home,
		"LANG=C.UTF-8",
		"USER=root",
		"LOGNAME=root",
	}
	if x.TTY {
		term := x.Term
		if term == "" {
			term = defaultTerm
		}
		env = append(env, "TERM="+term)
	}
	for _, kv := range x.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("environment entry %q is not KEY=VALUE: %w", kv, ErrInvalid)
		}
		env = setEnv(env, k, kv)
	}
	return env, nil
}

func setEnv(env []string, key, kv string) []string {
	for i, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}

func envValue(env []string, key string) string {
	for _, e := range env {
		if k, v, _ := strings.Cut(e, "="); k == key {
			return v
		}
	}
	return ""
}

// lookPath finds an executable regular file named file in path.
func lookPath(file, path string) (string, bool) {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// shellOnly names builtins and keywords whose meaning differs from any
// program of the same name, so they always go through the shell.
var shellOnly = map[string]bool{
	".": true, "alias": true, "bg": true, "break": true, "builtin": true, "case": true, "cd": true,
	"command": true, "continue": true, "declare": true, "dirs": true, "disown": true, "do": true,
	"done": true, "elif": true, "else": true, "enable": true, "esac": true, "eval": true, "exec": true,
	"exit": true, "export": true, "fc": true, "fg": true, "fi": true, "for": true, "function": true,
	"getopts": true, "hash": true, "help": true, "history": true, "if": true, "jobs": true, "let": true,
	"local": true, "logout": true, "mapfile": true, "popd": true, "pushd": true, "read": true,
	"readarray": true, "readonly": true, "return": true, "select": true, "set": true, "shift": true,
	"shopt": true, "source": true, "suspend": true, "then": true, "time": true, "times": true,
	"trap": true, "type": true, "typeset": true, "ulimit": true, "umask": true, "unalias": true,
	"unset": true, "until": true, "wait": true, "while": true, "coproc": true, "ulimits": true,
}

// plainCommand splits s into words if a shell would do nothing else with
// it: no quoting, expansion, redirection, globbing, assignment, operator or
// comment, and a first word that is not a shell builtin or keyword.
func plainCommand(s string) ([]string, bool) {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == ' ', r == '-', r == '_', r == '.', r == '/', r == ',', r == '+', r == ':', r == '@', r == '%':
		default:
			return nil, false
		}
	}
	words := strings.Fields(s)
	if len(words) == 0 || shellOnly[words[0]] {
		return nil, false
	}
	return words, true
}
