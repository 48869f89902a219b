package agent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// guestPath makes a relative path relative to the home directory, like a
// shell started there would.
func (s *Server) guestPath(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("empty path: %w", ErrInvalid)
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(s.cfg.HomeDir, p)
	}
	return filepath.Clean(p), nil
}

// regular refuses anything but a regular file, saying what p is instead.
func regular(p string, fi os.FileInfo) error {
	m := fi.Mode()
	var what string
	switch {
	case m.IsRegular():
		return nil
	case m.IsDir():
		return fmt.Errorf("%s is a directory; copy it with vers cp -r: %w", p, ErrInvalid)
	case m&os.ModeNamedPipe != 0:
		what = "a named pipe"
	case m&os.ModeSocket != 0:
		what = "a socket"
	case m&os.ModeCharDevice != 0:
		what = "a character device"
	case m&os.ModeDevice != 0:
		what = "a block device"
	default:
		what = "not a regular file"
	}
	return fmt.Errorf("%s is %s; only regular files can be copied: %w", p, what, ErrInvalid)
}

// openRegular opens a regular file for reading, refusing anything else
// before it can block: opening a named pipe waits for a writer.
func (s *Server) openRegular(path string) (*os.File, os.FileInfo, error) {
	p, err := s.guestPath(path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, nil, err
	}
	if err := regular(p, fi); err != nil {
		return nil, nil, err
	}
	// O_NONBLOCK, in case p became a pipe after the Stat: the open does not
	// wait then, and the check below refuses it. Reads of a regular file
	// ignore the flag.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	if fi, err = f.Stat(); err == nil {
		err = regular(p, fi)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// readFile answers a read request: the file's info, then its data as chunks
// up to the end of the file, whatever size the info said.
func (s *Server) readFile(st net.Conn, path string) {
	f, fi, err := s.openRegular(path)
	if err != nil {
		writeMsg(st, replyFor(err, reply{}))
		return
	}
	defer f.Close()
	if err := writeMsg(st, reply{File: &FileInfo{Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime()}}); err != nil {
		return
	}
	// The host sends nothing after its request, so a read returns only when
	// it closed the stream: nobody reads the rest, stop sending it.
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		io.Copy(io.Discard, st)
		st.SetWriteDeadline(time.Unix(1, 0))
	}()
	if _, err := sendChunks(st, f); err != nil {
		s.cfg.Logf("read %s: %v", f.Name(), err)
	}
	st.SetReadDeadline(time.Unix(1, 0))
	<-gone
}

// writeFile receives chunks into a temporary file beside path and renames it
// over path once the end marker arrived, so readers never see half a file.
// It answers as soon as it fails, without reading the rest: the host stops
// sending when the reply comes.
func (s *Server) writeFile(st io.ReadWriter, path string, mode os.FileMode) {
	err := s.receiveFile(st, path, mode)
	if err != nil {
		s.cfg.Logf("write %s: %v", path, err)
	}
	writeMsg(st, replyFor(err, reply{}))
}

func (s *Server) receiveFile(st io.Reader, path string, mode os.FileMode) error {
	p, err := s.guestPath(path)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory; give the path of the file to create in it: %w", p, ErrInvalid)
	}
	if mode == 0 {
		mode = 0o644
	}
	mode &= os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky
	err = storeFile(st, p, mode)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("write %s: the filesystem of %s is full; free space in the VM and retry: %w", p, filepath.Dir(p), ErrNoSpace)
	}
	return fmt.Errorf("write %s: %w", p, err)
}

// storeFile writes the chunks read from st to p through a temporary file in
// the same directory, removed on any failure.
func storeFile(st io.Reader, p string, mode os.FileMode) (err error) {
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(p)+".vers-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := io.Copy(f, &chunkReader{r: st}); err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	// Durable before it is visible: a crash never leaves a short file at p.
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}
