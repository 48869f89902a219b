package image

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

type cpioEntry struct {
	name       string
	mode       uint32
	rmaj, rmin uint32
	data       []byte
}

// readCPIO is an independent newc reader used to check the writer.
func readCPIO(b []byte) ([]cpioEntry, error) {
	var out []cpioEntry
	off := 0
	for {
		if off+110 > len(b) {
			return nil, fmt.Errorf("truncated header at %d", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			return nil, fmt.Errorf("bad magic at %d: %q", off, h[:6])
		}
		field := func(i int) uint32 {
			v, _ := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			return uint32(v)
		}
		mode, size, namesize := field(1), int(field(6)), int(field(11))
		nameStart := off + 110
		name := string(b[nameStart : nameStart+namesize-1])
		if b[nameStart+namesize-1] != 0 {
			return nil, fmt.Errorf("name %q not NUL-terminated", name)
		}
		dataStart := (nameStart + namesize + 3) &^ 3
		if name == "TRAILER!!!" {
			return out, nil
		}
		out = append(out, cpioEntry{name: name, mode: mode, rmaj: field(9), rmin: field(10),
			data: b[dataStart : dataStart+size]})
		off = (dataStart + size + 3) &^ 3
	}
}

func TestCPIOWriter(t *testing.T) {
	var buf bytes.Buffer
	c := NewCPIO(&buf, 0)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Dir("dev", 0o755))
	must(c.CharDev("/dev/console", 0o600, 5, 1))
	must(c.File("init", 0o755, []byte("#!/bin/sh\necho hi\n")))
	must(c.Dir("lib/", 0o755))
	must(c.File("lib/odd", 0o644, []byte("12345")))
	must(c.File("lib/empty", 0o644, nil))
	must(c.Symlink("sbin", "lib"))
	must(c.Close())
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d not 4-aligned", buf.Len())
	}
	got, err := readCPIO(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := []cpioEntry{
		{name: "dev", mode: 0o40755},
		{name: "dev/console", mode: 0o20600, rmaj: 5, rmin: 1},
		{name: "init", mode: 0o100755, data: []byte("#!/bin/sh\necho hi\n")},
		{name: "lib", mode: 0o40755},
		{name: "lib/odd", mode: 0o100644, data: []byte("12345")},
		{name: "lib/empty", mode: 0o100644},
		{name: "sbin", mode: 0o120777, data: []byte("lib")},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.name != w.name || g.mode != w.mode || g.rmaj != w.rmaj || g.rmin != w.rmin || !bytes.Equal(g.data, w.data) {
			t.Errorf("entry %d = %+v, want %+v", i, g, w)
		}
	}

	// The host's cpio must agree, when it is installed.
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Log("host cpio not installed; skipped the cross-check")
		return
	}
	cmd := exec.Command("cpio", "-t", "--quiet")
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	if got, want := strings.Fields(string(out)), "dev dev/console init lib lib/odd lib/empty sbin"; strings.Join(got, " ") != want {
		t.Errorf("cpio -t lists %q, want %q", got, want)
	}
}

func TestCPIORejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "/", "TRAILER!!!"} {
		c := NewCPIO(&bytes.Buffer{}, 0)
		if err := c.File(name, 0o644, nil); err == nil {
			t.Errorf("File(%q) succeeded", name)
		}
	}
}
