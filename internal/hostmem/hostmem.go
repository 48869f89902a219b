// Package hostmem reads the host's memory figures from /proc/meminfo: the
// one place vers parses that file.
package hostmem

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Read returns the /proc/meminfo fields named in keys (e.g. "MemTotal",
// "MemAvailable"), in bytes.
func Read(keys ...string) (map[string]int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return nil, err
	}
	return parse(string(b), keys)
}

func parse(text string, keys []string) (map[string]int64, error) {
	out := make(map[string]int64, len(keys))
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	for _, l := range strings.Split(text, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		k := strings.TrimSuffix(f[0], ":")
		if !want[k] {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("meminfo %s: %w", k, err)
		}
		if len(f) >= 3 && f[2] == "kB" {
			n <<= 10
		}
		out[k] = n
	}
	for _, k := range keys {
		if _, ok := out[k]; !ok {
			return nil, fmt.Errorf("no %s in /proc/meminfo", k)
		}
	}
	return out, nil
}

// Total is the host's RAM in bytes.
func Total() (int64, error) {
	m, err := Read("MemTotal")
	return m["MemTotal"], err
}

// Available is the memory the host can give without swapping, in bytes.
func Available() (int64, error) {
	m, err := Read("MemAvailable")
	return m["MemAvailable"], err
}
