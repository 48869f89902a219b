package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// samples are the durations of one measured operation, one per iteration.
type samples []time.Duration

// percentile returns the nearest-rank p-th percentile (0 < p <= 100): the
// smallest sample that at least p% of the samples do not exceed.
func (s samples) percentile(p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	sorted := append(samples(nil), s...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1]
}

func (s samples) mean() time.Duration {
	if len(s) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return sum / time.Duration(len(s))
}

// median is the lower median of xs (0 for none); xs is left as it was.
func median(xs []int64) int64 {
	if len(xs) == 0 {
		return 0
	}
	sorted := append([]int64(nil), xs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	return sorted[(len(sorted)-1)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ratio is a/b, or 0 when b is 0 (nothing to compare against).
func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// report publishes s as <name>-ms (mean), <name>-p50-ms and <name>-p90-ms.
func report(b *testing.B, name string, s samples) {
	b.ReportMetric(ms(s.mean()), name+"-ms")
	b.ReportMetric(ms(s.percentile(50)), name+"-p50-ms")
	b.ReportMetric(ms(s.percentile(90)), name+"-p90-ms")
}

// memUsage is what /proc/PID/smaps_rollup says about a process, in KiB.
type memUsage struct {
	RssKiB int64
	PssKiB int64
}

func (m memUsage) rssMiB() float64 { return float64(m.RssKiB) / 1024 }
func (m memUsage) pssMiB() float64 { return float64(m.PssKiB) / 1024 }

var errNoRollup = errors.New("smaps_rollup has no Rss or Pss line")

// parseSmapsRollup reads the Rss and Pss totals of a smaps_rollup file.
func parseSmapsRollup(b []byte) (memUsage, error) {
	var m memUsage
	var haveRss, havePss bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return memUsage{}, fmt.Errorf("smaps_rollup %s: %w", key, err)
		}
		switch key {
		case "Rss":
			m.RssKiB, haveRss = n, true
		case "Pss":
			m.PssKiB, havePss = n, true
		}
	}
	if !haveRss || !havePss {
		return memUsage{}, errNoRollup
	}
	return m, nil
}

func readMem(pid int) (memUsage, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return memUsage{}, err
	}
	return parseSmapsRollup(b)
}

func TestPercentile(t *testing.T) {
	ds := func(ms ...int) samples {
		var s samples
		for _, m := range ms {
			s = append(s, time.Duration(m)*time.Millisecond)
		}
		return s
	}
	for _, tc := range []struct {
		name string
		s    samples
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ds(7), 90, 7 * time.Millisecond},
		{"median odd, unsorted", ds(5, 1, 3), 50, 3 * time.Millisecond},
		{"median even takes the lower", ds(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"p90 of ten", ds(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 90, 9 * time.Millisecond},
		{"p90 of five is the max", ds(1, 2, 3, 4, 5), 90, 5 * time.Millisecond},
		{"p100", ds(2, 8, 4), 100, 8 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.percentile(tc.p); got != tc.want {
				t.Fatalf("percentile(%v) of %v = %v, want %v", tc.p, tc.s, got, tc.want)
			}
		})
	}
	s := ds(3, 1, 2)
	s.percentile(50)
	if s[0] != 3*time.Millisecond {
		t.Fatal("percentile reordered its input")
	}
}

func TestMeanAndRatio(t *testing.T) {
	if got := (samples{time.Second, 3 * time.Second}).mean(); got != 2*time.Second {
		t.Fatalf("mean = %v, want 2s", got)
	}
	if got := (samples{}).mean(); got != 0 {
		t.Fatalf("mean of nothing = %v, want 0", got)
	}
	if got := ratio(3*time.Second, time.Second); got != 3 {
		t.Fatalf("ratio = %v, want 3", got)
	}
	if got := ratio(time.Second, 0); got != 0 {
		t.Fatalf("ratio to zero = %v, want 0", got)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []int64
		want int64
	}{
		{nil, 0},
		{[]int64{5}, 5},
		{[]int64{9, 1, 5}, 5},
		{[]int64{4, 1, 3, 2}, 2},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestParseSmapsRollup(t *testing.T) {
	const real = `55d0c0a00000-7ffd3a5f2000 ---p 00000000 00:00 0                          [rollup]
Rss:               20480 kB
Pss:               15360 kB
Pss_Dirty:          9000 kB
Pss_Anon:           8000 kB
Shared_Clean:       4096 kB
Private_Dirty:      9000 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
`
	for _, tc := range []struct {
		name    string
		in      string
		want    memUsage
		wantErr bool
	}{
		{"rollup", real, memUsage{RssKiB: 20480, PssKiB: 15360}, false},
		{"no pss", "Rss: 10 kB\n", memUsage{}, true},
		{"empty", "", memUsage{}, true},
		{"bad number", "Rss: x kB\nPss: 1 kB\n", memUsage{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSmapsRollup([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestReadMemSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/smaps_rollup"); err != nil {
		t.Skip("this kernel has no /proc/PID/smaps_rollup (Linux 4.14 or later)")
	}
	m, err := readMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RssKiB <= 0 || m.PssKiB <= 0 || m.PssKiB > m.RssKiB {
		t.Fatalf("implausible memory of this test process: %+v", m)
	}
}
