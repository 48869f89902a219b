package rampool

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"vers/internal/poll"
	"vers/internal/qemu"
)

// The RAM directory belongs to the host and is shared by every daemon on it
// (one per home), and a RAM file's name says which VM or snapshot it holds,
// not whose. A daemon that is killed recovers its files when it starts
// again; but once its home is deleted nothing would ever start again for
// them, and they would hold host memory until the host reboots, with the
// QEMU processes that still map them. So each RAM file carries its home in
// an extended attribute, and the next daemon to start on the host removes
// the files of homes that no longer exist and ends the QEMU processes that
// map them.
const ownerAttr = "user.vers.home"

// Own records on the RAM file at path that it belongs to the daemon whose
// home is home.
func Own(path, home string) error {
	if err := unix.Setxattr(path, ownerAttr, []byte(home), 0); err != nil {
		return fmt.Errorf("record the owner of %s: %w", filepath.Base(path), err)
	}
	return nil
}

// Owner is the home recorded on the RAM file at path, "" if none is.
func Owner(path string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Getxattr(path, ownerAttr, buf)
	if errors.Is(err, unix.ENODATA) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// endable says whether the process pid, which maps an orphaned RAM file, may
// be ended: only QEMU processes are. A variable for tests.
var endable = isQEMU

func isQEMU(pid int) bool {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	return err == nil && strings.HasPrefix(filepath.Base(exe), "qemu-system")
}

// removeFile is os.Remove; a variable for tests.
var removeFile = os.Remove

// endWait bounds the wait for the ended processes to be gone.
const endWait = 10 * time.Second

// SweepOrphans removes the RAM files in dir whose home no longer exists,
// after ending the QEMU processes that map them, and returns the files it
// removed. Files without an owner (made before owners were recorded) and
// files of homes that exist are left: a daemon of that home recovers them.
// A daemon still running in a deleted home is not told apart from a dead
// one: its database is gone with the home, and its VMs could not outlive it.
func SweepOrphans(dir string, log *slog.Logger) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	orphans := map[string]string{} // path -> home
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		home, err := Owner(path)
		if err != nil || home == "" {
			continue
		}
		if _, err := os.Stat(home); errors.Is(err, fs.ErrNotExist) {
			orphans[path] = home
		}
	}
	if len(orphans) == 0 {
		return nil
	}
	ended := map[int]bool{}
	for pid, path := range mappers(orphans) {
		if !endable(pid) {
			log.Warn("a process maps the RAM of a deleted home and is not a VM: left running", "pid", pid, "file", path)
			continue
		}
		if unix.Kill(pid, unix.SIGKILL) == nil {
			ended[pid] = true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), endWait)
	defer cancel()
	poll.Until(ctx, 10*time.Millisecond, func() (bool, error) {
		for pid := range ended {
			if !qemu.Alive(pid) {
				delete(ended, pid)
			}
		}
		return len(ended) == 0, nil
	})
	var removed []string
	for path, home := range orphans {
		if err := removeFile(path); err != nil {
			log.Warn("remove the RAM of a deleted home", "file", path, "err", err)
			continue
		}
		removed = append(removed, path)
		log.Warn("removed the RAM of a deleted home", "file", filepath.Base(path), "home", home)
	}
	return removed
}

// mappers are the processes that map one of files, each with the file.
func mappers(files map[string]string) map[int]string {
	found := map[int]string{}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + p.Name() + "/maps")
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := sc.Text()
			i := strings.IndexByte(line, '/')
			if i < 0 {
				continue
			}
			if _, ok := files[line[i:]]; ok {
				found[pid] = line[i:]
				break
			}
		}
	}
	return found
}
