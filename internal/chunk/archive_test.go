package chunk

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// exported puts two blobs sharing data in a store and exports them.
func exported(t *testing.T) (s *Store, blobs []Blob, archive []byte) {
	t.Helper()
	s, _ = newStore(t)
	ctx := t.Context()
	shared := text(1, 1<<20)
	for i, data := range [][]byte{append(random(2, 1<<20), shared...), append(shared, random(3, 100)...)} {
		in := writeFile(t, filepath.Join(t.TempDir(), "in"), data)
		b, _, err := s.PutFile(ctx, in, nil)
		if err != nil {
			t.Fatalf("blob %d: %v", i, err)
		}
		blobs = append(blobs, b)
	}
	var buf bytes.Buffer
	st, err := s.Export(ctx, &buf, []byte(`{"commit":"c1"}`), blobs)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(refs(t, s, blobs...)); st.Chunks != want {
		t.Errorf("Export wrote %d chunks, want %d", st.Chunks, want)
	}
	return s, blobs, buf.Bytes()
}

func TestExportImport(t *testing.T) {
	src, blobs, archive := exported(t)
	ctx := t.Context()
	_, d := newStore(t)
	sp := &spy{Backend: d}
	dst := New(sp)
	manifest, st, err := dst.Import(ctx, bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	if string(manifest) != `{"commit":"c1"}` {
		t.Errorf("manifest %q", manifest)
	}
	if sp.syncs.Load() != 1 {
		t.Errorf("Import Synced %d times, want once", sp.syncs.Load())
	}
	srcChunks, srcBytes, _ := src.Usage(ctx)
	if st.Chunks != srcChunks || st.NewChunks != srcChunks || st.NewBytes != srcBytes {
		t.Errorf("Import stats %+v; want all %d chunks, %d bytes, new", st, srcChunks, srcBytes)
	}
	for i, b := range blobs {
		want, err := src.ReadBytes(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dst.ReadBytes(ctx, b)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("blob %d in the second store: %v", i, err)
		}
	}
	_, st, err = dst.Import(ctx, bytes.NewReader(archive))
	if err != nil || st.NewChunks != 0 || st.Chunks != srcChunks {
		t.Errorf("second Import: %+v, %v; want nothing new", st, err)
	}
}

// rewrite copies archive, passing each entry through edit, which may change
// its header or bytes or (returning nil) drop it.
func rewrite(t *testing.T, archive []byte, edit func(i int, hdr *tar.Header, data []byte) []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	tr := tar.NewReader(bytes.NewReader(archive))
	tw := tar.NewWriter(&out)
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if data = edit(i, hdr, data); data == nil {
			continue
		}
		hdr.Size = int64(len(data))
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	tw.Close()
	return out.Bytes()
}

func TestImportCorrupt(t *testing.T) {
	_, _, archive := exported(t)
	var victim string
	tests := []struct {
		name string
		edit func(i int, hdr *tar.Header, data []byte) []byte
	}{
		{"flipped byte", func(i int, hdr *tar.Header, data []byte) []byte {
			if i == 3 {
				victim = hdr.Name
				data[len(data)/2] ^= 1
			}
			return data
		}},
		{"renamed", func(i int, hdr *tar.Header, data []byte) []byte {
			if i == 3 {
				hdr.Name = chunkPrefix + Sum([]byte("other")).String()
				victim = hdr.Name
			}
			return data
		}},
		{"not zstd", func(i int, hdr *tar.Header, data []byte) []byte {
			if i == 3 {
				victim = hdr.Name
				return []byte("plain")
			}
			return data
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := rewrite(t, archive, tt.edit)
			dst, d := newStore(t)
			_, _, err := dst.Import(t.Context(), bytes.NewReader(bad))
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), victim) {
				t.Fatalf("Import: %v; want ErrCorrupt naming %s", err, victim)
			}
			t.Log(err)
			for h := range storedSet(t, d) {
				raw, err := d.Get(t.Context(), h)
				if err == nil {
					err = verifyRaw(h, raw)
				}
				if err != nil {
					t.Errorf("stored from a corrupt archive: %v", err)
				}
			}
		})
	}
}

func TestImportMalformed(t *testing.T) {
	_, _, archive := exported(t)
	var lastSize int64
	rewrite(t, archive, func(i int, hdr *tar.Header, data []byte) []byte { lastSize = hdr.Size; return data })
	lastEntry := 512 + (lastSize+511)/512*512
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"garbage", bytes.Repeat([]byte("vers"), 1000)},
		{"cut in the manifest header", archive[:300]},
		{"cut in a chunk", archive[:len(archive)/2+7]},
		{"cut at an entry", archive[:int64(len(archive))-1024-lastEntry]},
		{"entry dropped", rewrite(t, archive, func(i int, _ *tar.Header, data []byte) []byte {
			if i == 2 {
				return nil
			}
			return data
		})},
		{"no manifest", rewrite(t, archive, func(i int, _ *tar.Header, data []byte) []byte {
			if i == 0 {
				return nil
			}
			return data
		})},
		{"no count", rewrite(t, archive, func(i int, hdr *tar.Header, data []byte) []byte {
			hdr.PAXRecords = nil
			return data
		})},
		{"stray entry", rewrite(t, archive, func(i int, hdr *tar.Header, data []byte) []byte {
			if i == 2 {
				hdr.Name = "chunks/x"
			}
			return data
		})},
		{"zero chunk", rewrite(t, archive, func(i int, hdr *tar.Header, data []byte) []byte {
			if i == 2 {
				hdr.Name = chunkPrefix + Zero.String()
			}
			return data
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst, _ := newStore(t)
			_, _, err := dst.Import(t.Context(), bytes.NewReader(tt.in))
			if !errors.Is(err, ErrBadArchive) {
				t.Errorf("Import: %v; want ErrBadArchive", err)
			}
			t.Log(err)
		})
	}
	// The whole archive without the end-of-archive blocks has every chunk.
	dst, _ := newStore(t)
	if _, _, err := dst.Import(t.Context(), bytes.NewReader(archive[:len(archive)-1024])); err != nil {
		t.Errorf("Import without the end blocks: %v", err)
	}
}

func TestExportBroken(t *testing.T) {
	s, blobs, _ := exported(t)
	d := s.Backend().(*Dir)
	leaf := leafOf(t, s, blobs[0])
	writeFile(t, d.Path(leaf), []byte("garbage"))
	if _, err := s.Export(t.Context(), io.Discard, nil, blobs); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Export with a corrupt chunk: %v; want ErrCorrupt", err)
	}
	if err := d.Delete(t.Context(), leaf); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Export(t.Context(), io.Discard, nil, blobs); !errors.Is(err, ErrMissing) {
		t.Errorf("Export with a missing chunk: %v; want ErrMissing", err)
	}
}
