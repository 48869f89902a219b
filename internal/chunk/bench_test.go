package chunk

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// BenchmarkLevel is why the codec is SpeedFastest: throughput and stored
// ratio on 64 KiB chunks, one goroutine.
func BenchmarkLevel(b *testing.B) {
	exe, err := os.ReadFile(os.Args[0]) // machine code and data, like much of RAM
	if err != nil {
		b.Fatal(err)
	}
	const n = 16 << 20
	for len(exe) < n {
		exe = append(exe, exe...)
	}
	inputs := []struct {
		name string
		data []byte
	}{{"random", random(1, n)}, {"text", text(1, n)}, {"binary", exe[:n]}}
	for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderCRC(false), zstd.WithEncoderConcurrency(1))
		if err != nil {
			b.Fatal(err)
		}
		for _, in := range inputs {
			b.Run(fmt.Sprintf("%v/%s", level, in.name), func(b *testing.B) {
				b.SetBytes(n)
				var out []byte
				var stored int
				for b.Loop() {
					stored = 0
					for off := 0; off < n; off += ChunkSize {
						out = enc.EncodeAll(in.data[off:off+ChunkSize], out[:0])
						stored += len(out)
					}
				}
				b.ReportMetric(float64(stored)/n, "stored/byte")
			})
		}
	}
}

// commitFile is a 256 MiB file, half random, half text: a RAM file's worth.
func commitFile(b *testing.B) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "ram")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for i := range 8 {
		if _, err := f.Write(random(uint64(i), 16<<20)); err != nil {
			b.Fatal(err)
		}
		if _, err := f.Write(text(uint64(i), 16<<20)); err != nil {
			b.Fatal(err)
		}
	}
	return p
}

// cpTime is how long copying the file takes here: the baseline.
func cpTime(b *testing.B, src string) time.Duration {
	b.Helper()
	start := time.Now()
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(filepath.Join(b.TempDir(), "cp"))
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(struct{ io.Writer }{out}, in); err != nil { // no copy_file_range: read and write
		b.Fatal(err)
	}
	return time.Since(start)
}

func BenchmarkPutFile(b *testing.B) {
	src := commitFile(b)
	fi, _ := os.Stat(src)
	base := cpTime(b, src)
	run := func(b *testing.B, fresh, sync, inMem bool) {
		store := func() *Store {
			if inMem {
				return New(newMem())
			}
			s, _ := newStore(b)
			return s
		}
		s := store()
		if !fresh {
			if _, _, err := s.PutFile(b.Context(), src, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(fi.Size())
		var st Stats
		var total time.Duration
		for b.Loop() {
			if fresh {
				b.StopTimer()
				s = store()
				b.StartTimer()
			}
			start := time.Now()
			var err error
			if _, st, err = s.PutFile(b.Context(), src, nil); err != nil {
				b.Fatal(err)
			}
			if sync {
				if err := s.Backend().Sync(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
			total += time.Since(start)
		}
		b.ReportMetric(float64(st.NewBytes)/float64(fi.Size()), "stored/byte")
		b.ReportMetric(float64(total)/float64(b.N)/float64(base), "x-cp")
	}
	b.Run("new", func(b *testing.B) { run(b, true, false, false) })
	b.Run("new+sync", func(b *testing.B) { run(b, true, true, false) })
	b.Run("stored", func(b *testing.B) { run(b, false, false, false) })
	// In memory: hashing and compressing alone, no file per chunk.
	b.Run("new-mem", func(b *testing.B) { run(b, true, false, true) })
}

func BenchmarkReadFile(b *testing.B) {
	src := commitFile(b)
	fi, _ := os.Stat(src)
	base := cpTime(b, src)
	dir := b.TempDir()
	run := func(b *testing.B, s *Store) {
		blob, _, err := s.PutFile(b.Context(), src, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(fi.Size())
		var total time.Duration
		for b.Loop() {
			out := filepath.Join(dir, "out")
			start := time.Now()
			if err := s.ReadFile(b.Context(), blob, out); err != nil {
				b.Fatal(err)
			}
			total += time.Since(start)
			b.StopTimer()
			os.Remove(out)
			b.StartTimer()
		}
		b.ReportMetric(float64(total)/float64(b.N)/float64(base), "x-cp")
	}
	b.Run("dir", func(b *testing.B) { s, _ := newStore(b); run(b, s) })
	b.Run("mem", func(b *testing.B) { run(b, New(newMem())) })
}
