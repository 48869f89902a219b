package agent

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// readFile answers a read request: the file's info, then its data as chunks.
func (s *Server) readFile(st io.ReadWriter, path string) {
	p, err := s.guestPath(path)
	if err != nil {
		writeMsg(st, replyFor(err, reply{}))
		return
	}
	f, err := os.Open(p)
	if err != nil {
		writeMsg(st, replyFor(err, reply{}))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeMsg(st, replyFor(err, reply{}))
		return
	}
	if fi.IsDir() {
		writeMsg(st, reply{Error: p + " is a directory", Code: codeInvalid})
		return
	}
	if err := writeMsg(st, reply{File: &FileInfo{Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime()}}); err != nil {
		return
	}
	if _, err := sendChunks(st, f); err != nil {
		s.cfg.Logf("read %s: %v", p, err)
	}
}

// writeFile receives chunks into a temporary file beside path and renames it
// over path once the end marker arrived, so readers never see half a file.
func (s *Server) writeFile(st io.ReadWriter, path string, mode os.FileMode) {
	err := s.receiveFile(st, path, mode)
	if err != nil {
		s.cfg.Logf("write %s: %v", path, err)
	}
	writeMsg(st, replyFor(err, reply{}))
}

func (s *Server) receiveFile(st io.Reader, path string, mode os.FileMode) (err error) {
	p, err := s.guestPath(path)
	if err != nil {
		return err
	}
	if mode == 0 {
		mode = 0o644
	}
	mode &= os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky
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
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}
