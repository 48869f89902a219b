package vm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"

	"github.com/aymanbagabas/go-udiff"

	"vers/api"
)

// contentDiffs reads each changed regular file from both sides, up to max
// bytes of each, and diffs it; a file with a NUL byte or that is not UTF-8
// is named as binary, not diffed.
func (m *Manager) contentDiffs(ctx context.Context, a, b *diffSide, changes []api.FSChange, max int64) ([]api.FileDiff, error) {
	if max <= 0 {
		max = api.DefaultContentMax
	}
	var out []api.FileDiff
	for _, ch := range changes {
		if ch.Kind != api.ChangeChanged || ch.A == nil || ch.B == nil || ch.A.Type != "file" || ch.B.Type != "file" || !slices.Contains(ch.What, "content") {
			continue
		}
		fd := api.FileDiff{Path: ch.Path}
		var text [2]string
		for i, s := range []*diffSide{a, b} {
			data, cut, err := m.readCapped(ctx, s, ch.Path, max)
			if err != nil {
				return nil, err
			}
			fd.Truncated = fd.Truncated || cut
			if bytes.IndexByte(data, 0) >= 0 || !utf8.Valid(trimPartialRune(data)) {
				fd.Binary = true
			}
			text[i] = string(data)
		}
		if !fd.Binary {
			fd.Diff = udiff.Unified(sideLabel(a)+":"+ch.Path, sideLabel(b)+":"+ch.Path, text[0], text[1])
		}
		out = append(out, fd)
	}
	return out, nil
}

// readCapped reads up to max bytes of path in the side's guest and says
// whether there was more.
func (m *Manager) readCapped(ctx context.Context, s *diffSide, path string, max int64) ([]byte, bool, error) {
	rc, _, err := s.c.ReadFile(ctx, path)
	if err != nil {
		return nil, false, fmt.Errorf("vm %s: read %s: %w", label(s.row), path, m.agentErr(s.row, s.mc, s.c, err))
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, false, fmt.Errorf("vm %s: read %s: %w", label(s.row), path, m.agentErr(s.row, s.mc, s.c, err))
	}
	if int64(len(data)) > max {
		return data[:max], true, nil
	}
	return data, false, nil
}

// trimPartialRune drops a UTF-8 sequence the cap cut at the end.
func trimPartialRune(b []byte) []byte {
	for i := 0; i < utf8.UTFMax && i < len(b); i++ {
		if r, _ := utf8.DecodeLastRune(b[:len(b)-i]); r != utf8.RuneError {
			return b[:len(b)-i]
		}
	}
	return b
}

func sideLabel(s *diffSide) string {
	switch {
	case s.shown.Commit != "":
		return "commit " + s.shown.Commit[:min(8, len(s.shown.Commit))]
	case s.shown.Alias != "":
		return s.shown.Alias
	}
	return s.shown.ID[:min(8, len(s.shown.ID))]
}
